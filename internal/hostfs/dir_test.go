package hostfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func openDir(t *testing.T, r *Root, p string) *Dir {
	t.Helper()
	d, err := r.OpenDir(p)
	assert.NilError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDirNeverFollowsSymlinks(t *testing.T) {
	r, dir := newRoot(t)
	outside := t.TempDir()
	assert.NilError(t, os.WriteFile(filepath.Join(outside, "victim"), []byte("keep"), 0o644))
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "tree/real"), 0o755))
	// Absolute and relative links, to the outside and to inside the root.
	assert.NilError(t, os.Symlink(outside, filepath.Join(dir, "tree/abs")))
	assert.NilError(t, os.Symlink("real", filepath.Join(dir, "tree/rel")))
	d := openDir(t, r, "/tree")

	for _, p := range []string{"abs/victim", "rel/x", "abs/new"} {
		_, err := d.Open(p)
		assert.Check(t, errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOENT), "%s: %v", p, err)
		_, err = d.Create(p, 0o644)
		assert.Check(t, err != nil, p)
		assert.Check(t, d.Mkdir(p, 0o755) != nil, p)
		assert.Check(t, d.Symlink("x", p) != nil, p)
		_, err = d.Lstat(p)
		assert.Check(t, err != nil, p)
	}
	for _, p := range []string{"../x", "/etc/passwd", "a/../../x"} {
		_, err := d.Create(p, 0o644)
		assert.Check(t, err != nil, p)
	}
	// Opening a symlink itself as a directory or file is refused too.
	_, err := d.OpenDir("abs")
	assert.Check(t, err != nil)
	// RemoveAll deletes the link, never what it points to.
	assert.NilError(t, d.RemoveAll("abs"))
	data, err := os.ReadFile(filepath.Join(outside, "victim"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(data), "keep"))
	_, err = os.Lstat(filepath.Join(dir, "tree/abs"))
	assert.Check(t, os.IsNotExist(err))
}

func TestDirBuildsAndSwapsTrees(t *testing.T) {
	r, dir := newRoot(t)
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "opt/kata"), 0o755))
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "opt/kata/old"), []byte("old"), 0o644))
	opt := openDir(t, r, "/opt")

	assert.NilError(t, opt.Mkdir(".new", 0o750))
	assert.NilError(t, opt.Mkdir(".new/bin", 0o755))
	f, err := opt.Create(".new/bin/shim", 0o755)
	assert.NilError(t, err)
	_, err = f.Write([]byte("shim"))
	assert.NilError(t, err)
	assert.NilError(t, f.Close())
	assert.NilError(t, opt.Symlink("bin/shim", ".new/link"))
	assert.NilError(t, opt.Link("kata/old", opt, ".new/old"))
	_, err = opt.Create(".new/bin/shim", 0o755)
	assert.Check(t, errors.Is(err, os.ErrExist), "staged files are never written over")

	st, err := opt.Lstat(".new")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(st.Mode&0o7777, uint32(0o750)), "mode exact, umask ignored")
	target, err := opt.Readlink(".new/link")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(target, "bin/shim"))

	assert.NilError(t, opt.SyncFS())
	assert.NilError(t, opt.Exchange(".new", opt, "kata"))
	data, err := os.ReadFile(filepath.Join(dir, "opt/kata/bin/shim"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(data), "shim"))
	_, err = os.Stat(filepath.Join(dir, "opt/.new/old"))
	assert.NilError(t, err, "the old tree is now at the staging name")

	assert.Check(t, errors.Is(opt.RenameNoReplace(".new", opt, "kata"), os.ErrExist))
	assert.NilError(t, opt.RemoveAll(".new"))
	entries, err := opt.ReadDir(".")
	assert.NilError(t, err)
	assert.Check(t, is.Len(entries, 1))
	assert.NilError(t, opt.Remove("gone"), "removing what is not there is fine")
}

func TestDirLockSerialises(t *testing.T) {
	r, dir := newRoot(t)
	assert.NilError(t, os.Mkdir(filepath.Join(dir, "opt"), 0o755))
	a := openDir(t, r, "/opt")
	b := openDir(t, r, "/opt")
	unlock, err := a.Lock(context.Background())
	assert.NilError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel()
	_, err = b.Lock(ctx)
	assert.Check(t, errors.Is(err, context.DeadlineExceeded))
	unlock()
	unlock2, err := b.Lock(context.Background())
	assert.NilError(t, err)
	unlock2()
	entries, err := os.ReadDir(filepath.Join(dir, "opt"))
	assert.NilError(t, err)
	assert.Check(t, is.Len(entries, 0), "no lock file left behind")
}

func TestDirReadsDoNotWrite(t *testing.T) {
	r, dir := newRoot(t)
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "tree/sub"), 0o755))
	file := filepath.Join(dir, "tree/file")
	assert.NilError(t, os.WriteFile(file, []byte("data"), 0o644))
	// atime older than mtime: relatime would update it on the next read.
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{file, filepath.Join(dir, "tree/sub")} {
		assert.NilError(t, os.Chtimes(p, old, time.Now()))
	}
	d := openDir(t, r, "/tree")
	f, err := d.Open("file")
	assert.NilError(t, err)
	_, err = f.Read(make([]byte, 8))
	assert.NilError(t, err)
	f.Close()
	_, err = d.ReadDir("sub")
	assert.NilError(t, err)
	for _, p := range []string{file, filepath.Join(dir, "tree/sub")} {
		var st unix.Stat_t
		assert.NilError(t, unix.Stat(p, &st))
		assert.Check(t, is.Equal(time.Unix(st.Atim.Unix()).Unix(), old.Unix()), p)
	}
}

// Statfs measures the file system the directory is on, not the one a path
// would resolve to now.
func TestDirStatfs(t *testing.T) {
	r, dir := newRoot(t)
	assert.NilError(t, os.Mkdir(filepath.Join(dir, "opt"), 0o755))
	d := openDir(t, r, "/opt")
	got, err := d.Statfs()
	assert.NilError(t, err)
	var want unix.Statfs_t
	assert.NilError(t, unix.Statfs(filepath.Join(dir, "opt"), &want))
	assert.Check(t, is.Equal(got.Type, want.Type))
	assert.Check(t, is.Equal(got.Bsize, want.Bsize))
	assert.Check(t, is.Equal(got.Blocks, want.Blocks))
}

// Chown changes the entry itself: a symlink, not what it points to, and
// nothing outside the Dir through a symlink on the way.
func TestDirChown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files to another user needs root")
	}
	r, dir := newRoot(t)
	outside := t.TempDir()
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "tree/sub"), 0o755))
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "tree/sub/f"), nil, 0o644))
	assert.NilError(t, os.Symlink("sub/f", filepath.Join(dir, "tree/link")))
	assert.NilError(t, os.Symlink(outside, filepath.Join(dir, "tree/out")))
	d := openDir(t, r, "/tree")
	owner := func(p string) [2]uint32 {
		var st unix.Stat_t
		assert.NilError(t, unix.Lstat(p, &st))
		return [2]uint32{st.Uid, st.Gid}
	}
	for _, tc := range []struct {
		rel, path string
	}{
		{".", "tree"},
		{"link", "tree/link"},
	} {
		assert.NilError(t, d.Chown(tc.rel, 1000, 1001), tc.rel)
		assert.Check(t, is.Equal(owner(filepath.Join(dir, tc.path)), [2]uint32{1000, 1001}), tc.rel)
	}
	assert.Check(t, is.Equal(owner(filepath.Join(dir, "tree/sub/f")), [2]uint32{0, 0}), "the link's target is not changed")
	assert.NilError(t, d.Chown("sub/f", 1000, 1001))
	assert.Check(t, is.Equal(owner(filepath.Join(dir, "tree/sub/f")), [2]uint32{1000, 1001}))
	assert.Check(t, d.Chown("out/x", 1000, 1000) != nil)
	assert.Check(t, d.Chown("../x", 1000, 1000) != nil)
	assert.Check(t, is.Equal(owner(outside), [2]uint32{0, 0}))
}
