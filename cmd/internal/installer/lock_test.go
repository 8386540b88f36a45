package installer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

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

	c := filesOnly(host, payload(t, "qemu"), "qemu")
	c.Prefix = "/opt"
	_, err := c.Install(context.Background())
	assert.NilError(t, err)
	_, err = os.Stat(filepath.Join(host, "opt/kata/bin/containerd-shim-kata-v2"))
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
	unlock, err := c.lock(context.Background(), mustRoot(t, host))
	assert.NilError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.lock(ctx, mustRoot(t, host))
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	got := make(chan error, 1)
	go func() {
		unlock2, err := c.lock(context.Background(), mustRoot(t, host))
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
