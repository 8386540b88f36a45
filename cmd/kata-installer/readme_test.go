package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/cmd/internal/cli"
	"github.com/klauspost/compress/zstd"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// TestReadmeOutsideKubernetes runs the README's "outside Kubernetes"
// commands exactly as printed, in a directory holding a Kata release
// tarball, and checks that they install and then uninstall to nothing.
func TestReadmeOutsideKubernetes(t *testing.T) {
	lines := readmeBlock(t, "These work outside Kubernetes too.")
	assert.Assert(t, len(lines) >= 4, "README block not found or too short: %q", lines)
	dir := t.TempDir()
	t.Chdir(dir)
	writeRelease(t, "kata-static-3.32.0-amd64.tar.zst")

	ctx := context.Background()
	var ran []string
	for _, line := range lines {
		args := strings.Fields(line)
		switch args[0] {
		case "mkdir":
			assert.Check(t, is.DeepEqual(args[:2], []string{"mkdir", "-p"}))
			for _, d := range args[2:] {
				assert.NilError(t, os.MkdirAll(d, 0o755))
			}
		case "kata-installer":
			var stdout, stderr bytes.Buffer
			err := run(ctx, args[1:], cli.Environ{Stdout: &stdout, Stderr: &stderr})
			assert.NilError(t, err, "%s\nstderr:\n%s", line, stderr.String())
			ran = append(ran, args[1])
			if args[1] == "status" {
				assert.Check(t, is.Contains(stdout.String(), "install:   /opt/kata (pending-restart)"))
			}
		default:
			t.Fatalf("README command %q: the test does not know how to run it", line)
		}
	}
	assert.Check(t, is.DeepEqual(ran, []string{"plan", "install", "status", "uninstall"}))
	var left []string
	filepath.WalkDir("node", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(p, "node/run/") {
			left = append(left, p)
		}
		return nil
	})
	assert.Check(t, is.Len(left, 0), "uninstall left files behind")
}

// readmeBlock returns the command lines of the first sh block after the
// paragraph starting with intro.
func readmeBlock(t *testing.T, intro string) []string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	assert.NilError(t, err)
	_, after, ok := strings.Cut(string(data), intro)
	assert.Assert(t, ok, "README lacks %q", intro)
	_, block, ok := strings.Cut(after, "```sh\n")
	assert.Assert(t, ok)
	block, _, _ = strings.Cut(block, "```")
	var out []string
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// writeRelease writes a small kata-static release tarball, laid out as
// upstream's (./opt/kata/...), compressed with zstd.
func writeRelease(t *testing.T, name string) {
	t.Helper()
	f, err := os.Create(name)
	assert.NilError(t, err)
	defer f.Close()
	zw, err := zstd.NewWriter(f)
	assert.NilError(t, err)
	tw := tar.NewWriter(zw)
	entries := []struct {
		name string
		mode int64
		data string
	}{
		{"./opt/", 0o755, ""},
		{"./opt/kata/", 0o755, ""},
		{"./opt/kata/bin/", 0o755, ""},
		{"./opt/kata/bin/containerd-shim-kata-v2", 0o755, "#!/bin/sh\n"},
		{"./opt/kata/runtime-rs/", 0o755, ""},
		{"./opt/kata/runtime-rs/bin/", 0o755, ""},
		{"./opt/kata/runtime-rs/bin/containerd-shim-kata-v2", 0o755, "#!/bin/sh\n"},
		{"./opt/kata/share/", 0o755, ""},
		{"./opt/kata/share/defaults/", 0o755, ""},
		{"./opt/kata/share/defaults/kata-containers/", 0o755, ""},
		{"./opt/kata/share/defaults/kata-containers/configuration-qemu.toml", 0o644, "[hypervisor.qemu]\n"},
		{"./opt/kata/share/defaults/kata-containers/configuration-clh.toml", 0o644, "[hypervisor.clh]\n"},
		{"./opt/kata/share/defaults/kata-containers/runtime-rs/", 0o755, ""},
		{"./opt/kata/share/defaults/kata-containers/runtime-rs/configuration-dragonball.toml", 0o644, "[hypervisor.dragonball]\n"},
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.data)), Typeflag: tar.TypeReg}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		assert.NilError(t, tw.WriteHeader(h))
		_, err := tw.Write([]byte(e.data))
		assert.NilError(t, err)
	}
	assert.NilError(t, tw.Close())
	assert.NilError(t, zw.Close())
}
