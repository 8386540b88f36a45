package installer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/hosttest"
	"github.com/kata-deploy/kata-deploy/runtime"
	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// filesOnly is an install that touches files only: no API server, no
// systemd, a runtime version given.
func filesOnly(t *testing.T, host string) *Config {
	t.Helper()
	payload := t.TempDir()
	files := map[string]string{
		"opt/kata/bin/containerd-shim-kata-v2":                            "shim",
		"opt/kata/bin/qemu-system-x86_64":                                 "qemu",
		"opt/kata/share/defaults/kata-containers/configuration-qemu.toml": "[hypervisor.qemu]\npath = \"/opt/kata/bin/qemu-system-x86_64\"\n",
		"opt/kata/share/kata-containers/vmlinux.container":                "kernel",
		"opt/kata/share/kata-containers/kata-containers.img":              "image",
	}
	for p, data := range files {
		full := filepath.Join(payload, p)
		assert.NilError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		assert.NilError(t, os.WriteFile(full, []byte(data), 0o755))
	}
	return &Config{
		HostRoot:       host,
		Runtime:        "containerd",
		RuntimeVersion: "1.7.22",
		Payload:        payload,
		Mode:           runtime.ModeRuntimeClass,
		Shims:          []string{"qemu"},
		Prefix:         "/opt",
		VerifyTimeout:  time.Second,
	}
}

// In the installer's pod /host/run holds only systemd's socket directory,
// read-only. The install must not need to write there.
func TestInstallWithReadOnlyHostRun(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("a read-only mount needs root")
		}
		t.Skip("a read-only mount needs root")
	}
	host := hosttest.Write(t, []string{"run/systemd", "opt", "var/lib"}, map[string][]byte{
		"etc/containerd/config.toml": []byte("version = 2\n"),
	})
	run := filepath.Join(host, "run")
	assert.NilError(t, unix.Mount(run, run, "", unix.MS_BIND, ""))
	t.Cleanup(func() { _ = unix.Unmount(run, unix.MNT_DETACH) })
	assert.NilError(t, unix.Mount("", run, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""))
	assert.ErrorIs(t, os.WriteFile(filepath.Join(run, "probe"), nil, 0o600), unix.EROFS)

	c := filesOnly(t, host)
	assert.NilError(t, c.Install(context.Background()))
	_, err := os.Stat(filepath.Join(host, "opt/kata/bin/containerd-shim-kata-v2"))
	assert.NilError(t, err)

	assert.NilError(t, c.Uninstall(context.Background()))
	snap := hosttest.Snapshot(t, host)
	assert.Check(t, is.DeepEqual(snap, map[string]string{
		"./":                         "",
		"etc/":                       "",
		"etc/containerd/":            "",
		"etc/containerd/config.toml": "version = 2\n",
		"opt/":                       "",
		"run/":                       "",
		"run/systemd/":               "",
		"var/":                       "",
		"var/lib/":                   "",
	}))
}

// Installers on one node take turns, and a run that leaves nothing behind
// leaves no state directory either.
func TestLockSerialisesAndLeavesNothing(t *testing.T) {
	host := t.TempDir()
	c := &Config{HostRoot: host}
	unlock, err := c.lock(context.Background())
	assert.NilError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.lock(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	got := make(chan error, 1)
	go func() {
		unlock2, err := c.lock(context.Background())
		if err == nil {
			unlock2()
		}
		got <- err
	}()
	// The first holder empties and removes the state directory it made;
	// the waiter must then lock the directory that exists, not the one
	// that was removed.
	unlock()
	assert.NilError(t, <-got)
	_, err = os.Stat(filepath.Join(host, LockDir))
	assert.Assert(t, os.IsNotExist(err), "the state directory is left behind: %v", err)
}
