package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// manifestName is the file hack/testbed.sh writes last into the cache directory.
const manifestName = "testbed.env"

// provisionCmd is what a user runs to create the cache; named in skip messages.
const provisionCmd = "hack/testbed.sh provision"

// env is what the provisioning script built, read from its manifest.
type env struct {
	cacheDir      string
	etcd          string
	kubeAPIServer string
	k8sVersion    string
	rootfs        string
	crio          string
	crictl        string
	// A cluster's: only StartCluster uses them, but provisioning makes them
	// all, so a testbed without them is incomplete (see need below).
	kubeControllerManager string
	kubeScheduler         string
	kubectl               string
	kubeLayer             string
	standinShim           string             // a containerd shim v2 that runs pods with runc
	layers                map[Flavour]string // flavour -> overlay layer directory
	execLayers            map[Flavour]string // flavour -> layer holding /.testbed/bin/containerd
}

// CacheDir is where hack/testbed.sh keeps its builds: $KATA_DEPLOY_CACHE, else
// $XDG_CACHE_HOME/kata-deploy, else $HOME/.cache/kata-deploy (the script's rule).
func CacheDir() string {
	if d := os.Getenv("KATA_DEPLOY_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "kata-deploy")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "kata-deploy")
}

// loadEnv reads the manifest and checks that every file it names exists.
func loadEnv() (*env, error) {
	dir := CacheDir()
	path := filepath.Join(dir, manifestName)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("testbed not provisioned (no %s; run %s)", path, provisionCmd)
		}
		return nil, fmt.Errorf("read testbed manifest: %w", err)
	}
	defer f.Close()
	e := &env{cacheDir: dir, layers: map[Flavour]string{}, execLayers: map[Flavour]string{}}
	// The manifest's keys, each the path of one thing provisioning built.
	fields := map[string]*string{
		"ETCD": &e.etcd, "KUBE_APISERVER": &e.kubeAPIServer, "KUBERNETES_VERSION": &e.k8sVersion,
		"ROOTFS": &e.rootfs, "CRIO": &e.crio, "CRICTL": &e.crictl,
		"KUBE_CONTROLLER_MANAGER": &e.kubeControllerManager, "KUBE_SCHEDULER": &e.kubeScheduler,
		"KUBECTL": &e.kubectl, "KUBE_LAYER": &e.kubeLayer, "STANDIN_SHIM": &e.standinShim,
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if dst, ok := fields[k]; ok {
			*dst = v
			continue
		}
		switch {
		case strings.HasPrefix(k, "LAYER_"):
			e.layers[Flavour(strings.TrimPrefix(k, "LAYER_"))] = v
		case strings.HasPrefix(k, "EXEC_"):
			e.execLayers[Flavour(strings.TrimPrefix(k, "EXEC_"))] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read testbed manifest %s: %w", path, err)
	}
	need := []string{e.etcd, e.kubeAPIServer, filepath.Join(e.rootfs, "usr/bin/containerd"), e.crio,
		e.kubeControllerManager, e.kubeScheduler, e.kubectl, e.kubeLayer, e.standinShim}
	for _, f := range Flavours() {
		need = append(need, e.layers[f])
	}
	for _, p := range need {
		if p == "" {
			return nil, fmt.Errorf("testbed manifest %s is incomplete (re-run %s)", path, provisionCmd)
		}
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("testbed cache is missing %s (re-run %s)", p, provisionCmd)
		}
	}
	return e, nil
}

// check reports the first thing this machine lacks for the testbed, or nil.
func check() (*env, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("testbed needs root (nspawn, overlay mounts, nsenter)")
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "unshare", "mount", "umount", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("testbed needs %s on PATH (Debian package %s; run %s)",
				tool, debPackage(tool), provisionCmd)
		}
	}
	return loadEnv()
}

func debPackage(tool string) string {
	if tool == "systemd-nspawn" {
		return "systemd-container"
	}
	if tool == "chroot" {
		return "coreutils"
	}
	return "util-linux"
}

// Require skips the test with one line naming what the machine lacks for the testbed
// (root, systemd-nspawn, the provisioned cache). When the environment variable CI is
// "true" it fails the test instead: CI machines are provisioned and must run these tests.
func Require(t testing.TB) {
	t.Helper()
	requireEnv(t)
}

func requireEnv(t testing.TB) *env {
	t.Helper()
	e, err := check()
	if err != nil {
		// The messages all name the testbed already: one line, no prefix.
		if os.Getenv("CI") == "true" {
			t.Fatal(err.Error())
		}
		t.Skip(err.Error())
	}
	return e
}
