package hostfs

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotSymlink is what Readlink reports for a path that exists but is not
// a symlink.
var ErrNotSymlink = errors.New("not a symlink")

// Readlink returns the target of the symlink at the host path p. Symlinks
// on the way to p are resolved inside the root, as everywhere in this
// package; p's last element is read, never followed. A missing p yields an
// error matching fs.ErrNotExist, anything else that is not a symlink one
// matching ErrNotSymlink.
func (r *Root) Readlink(p string) (string, error) {
	p = clean(p)
	d, base, err := r.openParent(p)
	if err != nil {
		return "", err
	}
	defer d.Close()
	st, err := d.Lstat(base)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: p, Err: unwrapPathError(err)}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", &fs.PathError{Op: "readlink", Path: p, Err: ErrNotSymlink}
	}
	target, err := d.Readlink(base)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: p, Err: unwrapPathError(err)}
	}
	return target, nil
}

// Symlink atomically makes the host path p a new symlink to target: the
// link is made under a temporary name beside p, then renamed to p without
// replacing anything, so a reader sees no p or the whole link, never a
// half-made one, and whatever appeared at p meanwhile is kept (the error
// then matches fs.ErrExist). Symlinks on the way to p are resolved inside
// the root; target is stored as given. The parent directory must exist.
func (r *Root) Symlink(target, p string) error {
	p = clean(p)
	d, base, err := r.openParent(p)
	if err != nil {
		return fmt.Errorf("symlink %s: %w", p, err)
	}
	defer d.Close()
	sweepTemps(d.f, base)
	tmp := tempPrefix(base) + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := d.Symlink(target, tmp); err != nil {
		return &fs.PathError{Op: "symlink", Path: p, Err: unwrapPathError(err)}
	}
	err = d.RenameNoReplace(tmp, d, base)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		// A file system without RENAME_NOREPLACE: a hard link to the
		// symlink itself is just as atomic and fails the same way if p
		// exists.
		err = d.Link(tmp, d, base)
	}
	// After a rename the temporary is gone; after a link or a failure it
	// is not.
	_ = unix.Unlinkat(d.fd(), tmp, 0)
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return &fs.PathError{Op: "symlink", Path: p, Err: fs.ErrExist}
		}
		return &fs.PathError{Op: "symlink", Path: p, Err: err}
	}
	return d.Sync()
}

// openParent opens the directory holding the host path p (resolved as the
// host would) and returns it with p's last element.
func (r *Root) openParent(p string) (*Dir, string, error) {
	parent, err := r.Resolve(path.Dir(p))
	if err != nil {
		return nil, "", err
	}
	d, err := r.OpenDir(parent)
	if err != nil {
		return nil, "", err
	}
	return d, path.Base(p), nil
}
