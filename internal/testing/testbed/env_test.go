package testbed

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadEnvNotProvisioned(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KATA_DEPLOY_CACHE", dir)
	_, err := loadEnv()
	if err == nil || !strings.Contains(err.Error(), "not provisioned") || !strings.Contains(err.Error(), provisionCmd) {
		t.Fatalf("loadEnv on an empty cache: %v; want a 'not provisioned ... %s' error", err, provisionCmd)
	}
	// A manifest naming files that are gone says which one.
	manifest := "ETCD=/nonexistent/etcd\nKUBE_APISERVER=/bin/sh\nROOTFS=/\nCRIO=/bin/sh\n" +
		"LAYER_containerd-1.6=/\nLAYER_containerd-2.2=/\nLAYER_crio-1.34=/\n"
	if err := os.WriteFile(filepath.Join(dir, manifestName), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = loadEnv()
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/etcd") {
		t.Fatalf("loadEnv with a missing file: %v; want it named", err)
	}
}

func TestCacheDir(t *testing.T) {
	t.Setenv("KATA_DEPLOY_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/x")
	if got := CacheDir(); got != "/x/kata-deploy" {
		t.Errorf("CacheDir with XDG_CACHE_HOME=/x: %q", got)
	}
	t.Setenv("KATA_DEPLOY_CACHE", "/y")
	if got := CacheDir(); got != "/y" {
		t.Errorf("CacheDir with KATA_DEPLOY_CACHE=/y: %q", got)
	}
}

// TestNodeFileOptions: files, removals and symlinks given before boot are what the node
// sees, and the node's changes stay out of the cached root.
func TestNodeFileOptions(t *testing.T) {
	Require(t)
	t.Parallel()
	n := StartNode(t, Containerd16,
		WithName("tb-files"),
		WithFile("/etc/containerd/conf.d/user.toml", []byte("# user\n"), 0o600),
		WithoutFile("/etc/containerd/config.toml"),
		WithSymlink("/etc/kata-link", "/etc/containerd/conf.d/user.toml"),
	)
	if n.Name() != "tb-files" {
		t.Errorf("Name %q", n.Name())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := n.Exec(ctx, "stat", "-c", "%a %s", "/etc/containerd/conf.d/user.toml")
	if err != nil || strings.TrimSpace(string(out)) != "600 7" {
		t.Errorf("user.toml in node: %q, %v; want mode 600, 7 bytes", out, err)
	}
	if _, err := n.Exec(ctx, "test", "-e", "/etc/containerd/config.toml"); err == nil {
		t.Error("config.toml still there after WithoutFile")
	}
	if out, err := n.Exec(ctx, "cat", "/etc/kata-link"); err != nil || string(out) != "# user\n" {
		t.Errorf("symlink: %q, %v", out, err)
	}
	if _, err := n.Exec(ctx, "touch", "/etc/written-by-node"); err != nil {
		t.Fatal(err)
	}
	e, err := loadEnv()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.rootfs, "etc/written-by-node")); err == nil {
		t.Error("a node's write reached the cached root")
	}
	if _, err := os.Stat(filepath.Join(e.rootfs, "etc/containerd/config.toml")); err != nil {
		t.Errorf("the cached root lost Debian's config: %v", err)
	}
}
