package hostfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func newRoot(t *testing.T) (*Root, string) {
	t.Helper()
	dir := t.TempDir()
	r, err := New(dir)
	assert.NilError(t, err)
	return r, dir
}

func TestAbsoluteSymlinkResolvesInsideRoot(t *testing.T) {
	r, dir := newRoot(t)
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "etc/containerd"), 0o755))
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "etc/k8s"), 0o755))
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "etc/k8s/containerd.toml"), []byte("version = 2\n"), 0o640))
	// An ordinary host symlink: absolute, meaning the host's /etc/k8s.
	assert.NilError(t, os.Symlink("/etc/k8s/containerd.toml", filepath.Join(dir, "etc/containerd/config.toml")))

	got, err := r.ReadFile("/etc/containerd/config.toml")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(got), "version = 2\n"))

	assert.NilError(t, r.WriteFile("/etc/containerd/config.toml", []byte("version = 3\n"), 0o600))
	// The symlink stays a symlink; its target changed and kept its mode.
	link, err := os.Readlink(filepath.Join(dir, "etc/containerd/config.toml"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(link, "/etc/k8s/containerd.toml"))
	fi, err := os.Stat(filepath.Join(dir, "etc/k8s/containerd.toml"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o640)))
	data, _ := os.ReadFile(filepath.Join(dir, "etc/k8s/containerd.toml"))
	assert.Check(t, is.Equal(string(data), "version = 3\n"))
}

func TestHostileSymlinkCannotEscape(t *testing.T) {
	r, dir := newRoot(t)
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	assert.NilError(t, os.WriteFile(victim, []byte("keep"), 0o644))
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	// Relative and absolute escapes both point at the real victim path.
	rel, err := filepath.Rel(filepath.Join(dir, "etc"), victim)
	assert.NilError(t, err)
	assert.NilError(t, os.Symlink(rel, filepath.Join(dir, "etc/rel")))
	assert.NilError(t, os.Symlink(victim, filepath.Join(dir, "etc/abs")))
	assert.NilError(t, os.Symlink(outside, filepath.Join(dir, "etc/dir")))

	for _, p := range []string{"/etc/rel", "/etc/abs", "/etc/dir/victim"} {
		_, err := r.ReadFile(p)
		assert.Check(t, os.IsNotExist(err) || err != nil, p)
		_ = r.WriteFile(p, []byte("pwned"), 0o644)
		_, _ = r.MkdirAll(p+"/sub", 0o755)
		_ = r.Remove(p)
	}
	data, err := os.ReadFile(victim)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(data), "keep"))
	entries, err := os.ReadDir(outside)
	assert.NilError(t, err)
	assert.Check(t, is.Len(entries, 1))
}

func TestWriteFileKeepsModeAndLeavesNoTemp(t *testing.T) {
	r, dir := newRoot(t)
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	assert.NilError(t, r.WriteFile("/etc/new.toml", []byte("a"), 0o600))
	fi, err := os.Stat(filepath.Join(dir, "etc/new.toml"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o600)))

	assert.NilError(t, os.Chmod(filepath.Join(dir, "etc/new.toml"), 0o644))
	assert.NilError(t, r.WriteFile("/etc/new.toml", []byte("b"), 0o600))
	fi, err = os.Stat(filepath.Join(dir, "etc/new.toml"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o644)))

	entries, err := os.ReadDir(filepath.Join(dir, "etc"))
	assert.NilError(t, err)
	assert.Check(t, is.Len(entries, 1))
	assert.Check(t, r.WriteFile("/missing/dir/f", nil, 0o644) != nil)
}

func TestMkdirAllReportsCreatedAndRemoveUndoes(t *testing.T) {
	r, dir := newRoot(t)
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	created, err := r.MkdirAll("/etc/crio/crio.conf.d", 0o755)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(created, []string{"/etc/crio", "/etc/crio/crio.conf.d"}))
	again, err := r.MkdirAll("/etc/crio/crio.conf.d", 0o755)
	assert.NilError(t, err)
	assert.Check(t, is.Len(again, 0))
	for i := len(created) - 1; i >= 0; i-- {
		assert.NilError(t, r.Remove(created[i]))
	}
	ok, err := r.Exists("/etc/crio")
	assert.NilError(t, err)
	assert.Check(t, !ok)
	assert.NilError(t, r.Remove("/etc/crio/never-existed"))
}

func TestLockSerialises(t *testing.T) {
	r, _ := newRoot(t)
	unlock, err := r.Lock(context.Background(), "/lock")
	assert.NilError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err = r.Lock(ctx, "/lock")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	unlock()
	unlock2, err := r.Lock(context.Background(), "/lock")
	assert.NilError(t, err)
	unlock2()
}

// A transient lock serialises like Lock, leaves no file once released,
// and a waiter that got the lock of the file its holder removed takes the
// new one rather than running beside the next holder.
func TestLockTransient(t *testing.T) {
	r, dir := newRoot(t)
	unlock, err := r.LockTransient(context.Background(), "/lock")
	assert.NilError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err = r.LockTransient(ctx, "/lock")
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	got := make(chan func())
	go func() {
		u, err := r.LockTransient(context.Background(), "/lock")
		assert.Check(t, err)
		got <- u
	}()
	time.Sleep(100 * time.Millisecond) // the waiter holds the old file open
	unlock()
	unlock2 := <-got
	_, err = os.Lstat(filepath.Join(dir, "lock"))
	assert.NilError(t, err, "the new holder's file")
	ctx2, cancel2 := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel2()
	_, err = r.LockTransient(ctx2, "/lock")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	unlock2()
	_, err = os.Lstat(filepath.Join(dir, "lock"))
	assert.Check(t, os.IsNotExist(err), "lock file left: %v", err)
}

// TestStaleTempsOfAKilledWriterAreSwept: a writer killed between creating
// its temporary and renaming it leaves the temporary behind; the next
// write or removal of that file removes it, and leaves other files alone.
func TestStaleTempsOfAKilledWriterAreSwept(t *testing.T) {
	dir := t.TempDir()
	r, err := New(dir)
	assert.NilError(t, err)
	etc := filepath.Join(dir, "etc")
	assert.NilError(t, os.MkdirAll(etc, 0o755))
	stale := func(name string) string {
		p := filepath.Join(etc, "."+name+".kata-deploy-dn5sowdd06o9")
		assert.NilError(t, os.WriteFile(p, []byte("half"), 0o644))
		return p
	}
	other := filepath.Join(etc, ".other.toml.kata-deploy-1")
	assert.NilError(t, os.WriteFile(other, nil, 0o644))

	tmp := stale("config.toml")
	assert.NilError(t, r.WriteFile("/etc/config.toml", []byte("x"), 0o644))
	_, err = os.Stat(tmp)
	assert.Check(t, os.IsNotExist(err), "WriteFile left %s", tmp)

	tmp = stale("state.json")
	assert.NilError(t, r.Remove("/etc/state.json"))
	_, err = os.Stat(tmp)
	assert.Check(t, os.IsNotExist(err), "Remove left %s", tmp)

	tmp = stale("journal.json")
	r.RemoveTemps("/etc/journal.json")
	_, err = os.Stat(tmp)
	assert.Check(t, os.IsNotExist(err), "RemoveTemps left %s", tmp)

	_, err = os.Stat(other)
	assert.NilError(t, err, "another file's temporary was removed")
}

// Directories go innermost first while empty; the first that holds
// something stops the removal, and it and its parents stay.
func TestRemoveEmptyDirs(t *testing.T) {
	r, dir := newRoot(t)
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "var/lib/x/y"), 0o755))
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "var/keep"), nil, 0o644))

	removed, err := r.RemoveEmptyDirs([]string{"/var", "/var/lib", "/var/lib/x", "/var/lib/x/y"})
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(removed, []string{"/var/lib/x/y", "/var/lib/x", "/var/lib"}))
	_, err = os.Stat(filepath.Join(dir, "var/keep"))
	assert.NilError(t, err)
}

// In the installer's pod the host's /var/lib is read-only and the state
// directory a hostPath mount in it: rmdir(2) says EROFS there before it
// says ENOTEMPTY or EBUSY. Neither a full nor an empty directory on a
// read-only mount is an error; both stay. (Reverted once for this: every
// uninstall on the real cluster left /opt/kata and the record behind.)
func TestRemoveEmptyDirsOnReadOnlyMount(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to bind-mount a directory read-only")
	}
	r, dir := newRoot(t)
	lib := filepath.Join(dir, "var/lib")
	assert.NilError(t, os.MkdirAll(filepath.Join(lib, "full"), 0o755))
	assert.NilError(t, os.MkdirAll(filepath.Join(lib, "empty"), 0o755))
	assert.NilError(t, os.WriteFile(filepath.Join(lib, "full/install.json"), nil, 0o600))
	assert.NilError(t, unix.Mount(lib, lib, "", unix.MS_BIND, ""))
	t.Cleanup(func() { _ = unix.Unmount(lib, unix.MNT_DETACH) })
	assert.NilError(t, unix.Mount("", lib, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""))
	assert.Check(t, is.ErrorIs(unix.Rmdir(filepath.Join(lib, "full")), unix.EROFS), "this kernel says something else first")

	for _, d := range []string{"/var/lib/full", "/var/lib/empty"} {
		removed, err := r.RemoveEmptyDirs([]string{d})
		assert.Check(t, err, d)
		assert.Check(t, is.Len(removed, 0), d)
		_, err = os.Stat(filepath.Join(dir, d))
		assert.Check(t, err, d)
	}
}

func TestNewRefusesEmptyOrRelativeRoot(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tc := range []struct {
		dir, want string
	}{
		{dir: "", want: "host root is empty"},
		{dir: ".", want: `host root "." is a relative path`},
		{dir: "host", want: `host root "host" is a relative path`},
		{dir: "../host", want: `host root "../host" is a relative path`},
	} {
		_, err := New(tc.dir)
		assert.Check(t, is.ErrorContains(err, tc.want), tc.dir)
		assert.Check(t, is.ErrorContains(CheckRoot(tc.dir), tc.want), tc.dir)
	}
	assert.NilError(t, CheckRoot("/"))
	r, err := New("/tmp/../tmp/")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(r.Dir(), "/tmp"))
}
