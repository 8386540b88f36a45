package hostfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestSymlinkIsAtomicAndNeverReplaces(t *testing.T) {
	r, dir := newRoot(t)
	bin := filepath.Join(dir, "usr/local/bin")
	assert.NilError(t, os.MkdirAll(bin, 0o755))

	assert.NilError(t, r.Symlink("/opt/kata/bin/shim", "/usr/local/bin/shim-a"))
	got, err := os.Readlink(filepath.Join(bin, "shim-a"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got, "/opt/kata/bin/shim"))
	target, err := r.Readlink("/usr/local/bin/shim-a")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(target, "/opt/kata/bin/shim"))

	// Someone else's file or link is kept, byte for byte.
	assert.NilError(t, os.WriteFile(filepath.Join(bin, "theirs"), []byte("#!/bin/sh\n"), 0o755))
	err = r.Symlink("/opt/kata/bin/shim", "/usr/local/bin/theirs")
	assert.Check(t, errors.Is(err, fs.ErrExist), "got %v", err)
	err = r.Symlink("/elsewhere", "/usr/local/bin/shim-a")
	assert.Check(t, errors.Is(err, fs.ErrExist), "got %v", err)
	data, _ := os.ReadFile(filepath.Join(bin, "theirs"))
	assert.Check(t, is.Equal(string(data), "#!/bin/sh\n"))
	got, _ = os.Readlink(filepath.Join(bin, "shim-a"))
	assert.Check(t, is.Equal(got, "/opt/kata/bin/shim"))

	// No temporary is left behind, whatever happened.
	entries, err := os.ReadDir(bin)
	assert.NilError(t, err)
	assert.Check(t, is.Len(entries, 2))

	_, err = r.Readlink("/usr/local/bin/theirs")
	assert.Check(t, errors.Is(err, ErrNotSymlink), "got %v", err)
	_, err = r.Readlink("/usr/local/bin/missing")
	assert.Check(t, errors.Is(err, fs.ErrNotExist), "got %v", err)
	_, err = r.Readlink("/no/such/dir/x")
	assert.Check(t, errors.Is(err, fs.ErrNotExist), "got %v", err)

	// Remove takes the link away, not what it points at.
	assert.NilError(t, r.Remove("/usr/local/bin/shim-a"))
	_, err = os.Lstat(filepath.Join(bin, "shim-a"))
	assert.Check(t, errors.Is(err, fs.ErrNotExist))
}

func TestSymlinkParentResolvesInsideRoot(t *testing.T) {
	r, dir := newRoot(t)
	outside := t.TempDir()
	// /usr/local/bin is itself an absolute symlink, as on some hosts: it
	// means the host's /opt/bin, never this machine's.
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "usr/local"), 0o755))
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "opt/bin"), 0o755))
	assert.NilError(t, os.Symlink("/opt/bin", filepath.Join(dir, "usr/local/bin")))
	assert.NilError(t, r.Symlink("/opt/kata/shim", "/usr/local/bin/shim"))
	got, err := os.Readlink(filepath.Join(dir, "opt/bin/shim"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got, "/opt/kata/shim"))

	// A hostile parent that points out of the root stays inside it.
	assert.NilError(t, os.Symlink(outside, filepath.Join(dir, "escape")))
	err = r.Symlink("/x", "/escape/shim")
	assert.Check(t, err != nil)
	entries, _ := os.ReadDir(outside)
	assert.Check(t, is.Len(entries, 0), "a link was made outside the root")
}

func TestSymlinkSweepsAKilledWritersTemp(t *testing.T) {
	r, dir := newRoot(t)
	stale := filepath.Join(dir, tempPrefix("shim")+"abc")
	assert.NilError(t, os.Symlink("/x", stale))
	assert.NilError(t, r.Symlink("/opt/kata/shim", "/shim"))
	_, err := os.Lstat(stale)
	assert.Check(t, errors.Is(err, fs.ErrNotExist))
}
