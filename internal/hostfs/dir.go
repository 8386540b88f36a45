package hostfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is an open directory under a Root, for building, swapping and tearing
// down whole trees. Unlike the Root's methods, which resolve host paths the
// way the host would, a Dir's methods take paths relative to it and never
// follow a symlink in them: inside a tree being installed a symlink is an
// entry to copy or delete, never a way somewhere else. Every lookup goes
// through openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, so a tree whose
// directories a hostile process swaps for symlinks cannot redirect a write.
type Dir struct {
	f    *os.File
	name string // host path, for messages
}

// OpenDir opens the host directory p, resolving symlinks in p as the host
// would, never leaving the root.
func (r *Root) OpenDir(p string) (*Dir, error) {
	f, err := r.open(p, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	return &Dir{f: f, name: clean(p)}, nil
}

// Name returns the host path the Dir was opened as, for messages.
func (d *Dir) Name() string { return d.name }

// Close releases the directory.
func (d *Dir) Close() error { return d.f.Close() }

func (d *Dir) fd() int { return int(d.f.Fd()) }

func (d *Dir) join(rel string) string {
	if rel == "." {
		return d.name
	}
	return path.Join(d.name, rel)
}

// cleanRel checks that rel is a relative path that stays below the Dir.
func cleanRel(rel string) (string, error) {
	if rel == "" || strings.HasPrefix(rel, "/") {
		return "", fmt.Errorf("%q: not a relative path", rel)
	}
	c := path.Clean(rel)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%q: leaves the directory", rel)
	}
	return c, nil
}

// openat2 opens rel beneath dirfd without following any symlink. The kernel
// answers EAGAIN when a concurrent rename might have let a lookup escape;
// retrying is what the man page asks for.
func openat2(dirfd int, rel string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 16 {
		fd, err := unix.Openat2(dirfd, rel, &how)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// parent opens the directory holding rel and returns its fd and rel's last
// element. Call done when finished with fd.
func (d *Dir) parent(rel string) (fd int, base string, done func(), err error) {
	c, err := cleanRel(rel)
	if err != nil {
		return -1, "", nil, err
	}
	if c == "." {
		return -1, "", nil, fmt.Errorf("%q: names the directory itself", rel)
	}
	dir, base := path.Split(c)
	if dir == "" {
		return d.fd(), base, func() {}, nil
	}
	pfd, err := openat2(d.fd(), dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, "", nil, err
	}
	return pfd, base, func() { unix.Close(pfd) }, nil
}

func (d *Dir) pathErr(op, rel string, err error) error {
	return &fs.PathError{Op: op, Path: d.join(rel), Err: err}
}

// OpenDir opens the directory rel below d.
func (d *Dir) OpenDir(rel string) (*Dir, error) {
	c, err := cleanRel(rel)
	if err != nil {
		return nil, d.pathErr("open", rel, err)
	}
	// O_NOATIME, as in Open: listing a directory must not write.
	fd, err := openat2(d.fd(), c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOATIME, 0)
	if err == unix.EPERM {
		fd, err = openat2(d.fd(), c, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	}
	if err != nil {
		return nil, d.pathErr("open", rel, err)
	}
	return &Dir{f: os.NewFile(uintptr(fd), d.join(c)), name: d.join(c)}, nil
}

// Open opens the regular file rel below d for reading.
func (d *Dir) Open(rel string) (*os.File, error) {
	c, err := cleanRel(rel)
	if err != nil {
		return nil, d.pathErr("open", rel, err)
	}
	// O_NOATIME: reading must not write. Without it, the first read after
	// a file was written updates its atime (relatime), a metadata write.
	// Only the owner (or CAP_FOWNER) may ask for it; others read without.
	fd, err := openat2(d.fd(), c, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOATIME, 0)
	if err == unix.EPERM {
		fd, err = openat2(d.fd(), c, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	}
	if err != nil {
		return nil, d.pathErr("open", rel, err)
	}
	f := os.NewFile(uintptr(fd), d.join(c))
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		if err == nil {
			err = errors.New("not a regular file")
		}
		return nil, d.pathErr("open", rel, err)
	}
	// O_NONBLOCK only kept a FIFO from hanging the open.
	if err := unix.SetNonblock(fd, false); err != nil {
		f.Close()
		return nil, d.pathErr("open", rel, err)
	}
	return f, nil
}

// Create creates the new regular file rel below d, open for writing. It
// fails if rel exists: trees are staged fresh, never written over.
func (d *Dir) Create(rel string, perm fs.FileMode) (*os.File, error) {
	c, err := cleanRel(rel)
	if err != nil {
		return nil, d.pathErr("create", rel, err)
	}
	fd, err := openat2(d.fd(), c, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, uint32(perm.Perm()))
	if err != nil {
		return nil, d.pathErr("create", rel, err)
	}
	return os.NewFile(uintptr(fd), d.join(c)), nil
}

// Mkdir creates the directory rel below d with exactly perm (the umask
// does not apply).
func (d *Dir) Mkdir(rel string, perm fs.FileMode) error {
	pfd, base, done, err := d.parent(rel)
	if err != nil {
		return d.pathErr("mkdir", rel, err)
	}
	defer done()
	if err := unix.Mkdirat(pfd, base, uint32(perm.Perm())); err != nil {
		return d.pathErr("mkdir", rel, err)
	}
	return d.Chmod(rel, perm)
}

// Chmod sets the permission bits of the file or directory rel below d. A
// symlink is refused rather than followed.
func (d *Dir) Chmod(rel string, perm fs.FileMode) error {
	c, err := cleanRel(rel)
	if err != nil {
		return d.pathErr("chmod", rel, err)
	}
	fd, err := openat2(d.fd(), c, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return d.pathErr("chmod", rel, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
		return d.pathErr("chmod", rel, err)
	}
	return nil
}

// Chown sets the owner and group of rel below d ("." for d itself). A
// symlink is changed itself, never followed.
func (d *Dir) Chown(rel string, uid, gid int) error {
	c, err := cleanRel(rel)
	if err != nil {
		return d.pathErr("chown", rel, err)
	}
	if c == "." {
		err = unix.Fchown(d.fd(), uid, gid)
	} else {
		pfd, base, done, perr := d.parent(c)
		if perr != nil {
			return d.pathErr("chown", rel, perr)
		}
		err = unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
		done()
	}
	if err != nil {
		return d.pathErr("chown", rel, err)
	}
	return nil
}

// Symlink creates the symlink rel below d pointing at target. The target
// is stored as given; it is the caller's job to have checked it.
func (d *Dir) Symlink(target, rel string) error {
	pfd, base, done, err := d.parent(rel)
	if err != nil {
		return d.pathErr("symlink", rel, err)
	}
	defer done()
	if err := unix.Symlinkat(target, pfd, base); err != nil {
		return d.pathErr("symlink", rel, err)
	}
	return nil
}

// Readlink returns the target of the symlink rel below d.
func (d *Dir) Readlink(rel string) (string, error) {
	pfd, base, done, err := d.parent(rel)
	if err != nil {
		return "", d.pathErr("readlink", rel, err)
	}
	defer done()
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(pfd, base, buf)
		if err != nil {
			return "", d.pathErr("readlink", rel, err)
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// Lstat returns the raw status of rel below d, not following a final
// symlink. The raw form carries the inode and change time, which callers
// use to notice that a file changed without reading it.
func (d *Dir) Lstat(rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	c, err := cleanRel(rel)
	if err != nil {
		return st, d.pathErr("lstat", rel, err)
	}
	if c == "." {
		err = unix.Fstat(d.fd(), &st)
	} else {
		pfd, base, done, perr := d.parent(c)
		if perr != nil {
			return st, d.pathErr("lstat", rel, perr)
		}
		err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		done()
	}
	if err != nil {
		return st, d.pathErr("lstat", rel, err)
	}
	return st, nil
}

// ReadDir lists the directory rel below d, sorted by name.
func (d *Dir) ReadDir(rel string) ([]fs.DirEntry, error) {
	sub, err := d.OpenDir(rel)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	entries, err := sub.f.ReadDir(-1)
	if err != nil {
		return nil, d.pathErr("readdir", rel, err)
	}
	sortEntries(entries)
	return entries, nil
}

// Link makes newRel below to a hard link to oldRel below d. A symlink is
// linked itself, not its target.
func (d *Dir) Link(oldRel string, to *Dir, newRel string) error {
	ofd, obase, odone, err := d.parent(oldRel)
	if err != nil {
		return d.pathErr("link", oldRel, err)
	}
	defer odone()
	nfd, nbase, ndone, err := to.parent(newRel)
	if err != nil {
		return to.pathErr("link", newRel, err)
	}
	defer ndone()
	if err := unix.Linkat(ofd, obase, nfd, nbase, 0); err != nil {
		return &os.LinkError{Op: "link", Old: d.join(oldRel), New: to.join(newRel), Err: err}
	}
	return nil
}

// Rename renames oldRel below d to newRel below to, replacing newRel if
// it exists (an empty directory, or anything but a directory).
func (d *Dir) Rename(oldRel string, to *Dir, newRel string) error {
	return d.rename(oldRel, to, newRel, 0)
}

// RenameNoReplace renames oldRel below d to newRel below to, failing with
// an error matching fs.ErrExist if newRel exists.
func (d *Dir) RenameNoReplace(oldRel string, to *Dir, newRel string) error {
	return d.rename(oldRel, to, newRel, unix.RENAME_NOREPLACE)
}

// Exchange atomically swaps oldRel below d and newRel below to, which may
// be directories: a reader sees one tree or the other, never neither. A
// file system without RENAME_EXCHANGE yields an error matching
// errors.ErrUnsupported.
func (d *Dir) Exchange(oldRel string, to *Dir, newRel string) error {
	err := d.rename(oldRel, to, newRel, unix.RENAME_EXCHANGE)
	var le *os.LinkError
	if errors.As(err, &le) && (le.Err == unix.EINVAL || le.Err == unix.ENOSYS || le.Err == unix.EOPNOTSUPP) {
		le.Err = fmt.Errorf("%w: %w", errors.ErrUnsupported, le.Err)
	}
	return err
}

func (d *Dir) rename(oldRel string, to *Dir, newRel string, flags uint) error {
	ofd, obase, odone, err := d.parent(oldRel)
	if err != nil {
		return d.pathErr("rename", oldRel, err)
	}
	defer odone()
	nfd, nbase, ndone, err := to.parent(newRel)
	if err != nil {
		return to.pathErr("rename", newRel, err)
	}
	defer ndone()
	if err := unix.Renameat2(ofd, obase, nfd, nbase, flags); err != nil {
		return &os.LinkError{Op: "rename", Old: d.join(oldRel), New: to.join(newRel), Err: err}
	}
	return nil
}

// Remove deletes the file, symlink or empty directory rel below d.
// Removing what does not exist is not an error.
func (d *Dir) Remove(rel string) error {
	pfd, base, done, err := d.parent(rel)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return d.pathErr("remove", rel, err)
	}
	defer done()
	err = unix.Unlinkat(pfd, base, 0)
	if err == unix.EISDIR {
		err = unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR)
	}
	if err != nil && err != unix.ENOENT {
		return d.pathErr("remove", rel, err)
	}
	return nil
}

// RemoveAll deletes rel below d and everything under it, descending only
// into real directories: a symlink is deleted, never followed. Removing
// what does not exist is not an error.
func (d *Dir) RemoveAll(rel string) error {
	st, err := d.Lstat(rel)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		sub, err := d.OpenDir(rel)
		if err != nil {
			return err
		}
		err = sub.removeChildren()
		sub.Close()
		if err != nil {
			return err
		}
	}
	return d.Remove(rel)
}

func (d *Dir) removeChildren() error {
	for {
		// Read in batches so a huge directory does not need one huge slice.
		entries, err := d.f.ReadDir(1024)
		for _, e := range entries {
			if e.IsDir() {
				if err := d.RemoveAll(e.Name()); err != nil {
					return err
				}
				continue
			}
			if err := unix.Unlinkat(d.fd(), e.Name(), 0); err != nil && err != unix.ENOENT {
				return d.pathErr("remove", e.Name(), err)
			}
		}
		if err != nil || len(entries) == 0 {
			return nil
		}
		// Entries were removed under the open directory stream; start
		// over so none is skipped.
		if _, err := d.f.Seek(0, 0); err != nil {
			return d.pathErr("readdir", ".", err)
		}
	}
}

// Sync flushes the directory itself (its entries) to stable storage.
func (d *Dir) Sync() error {
	if err := d.f.Sync(); err != nil {
		return d.pathErr("sync", ".", err)
	}
	return nil
}

// SyncFS flushes the whole file system holding d to stable storage, as
// syncfs(2): one call makes every write so far durable, which is much
// cheaper than an fsync per file when a whole tree was just written.
func (d *Dir) SyncFS() error {
	if err := unix.Syncfs(d.fd()); err != nil {
		return d.pathErr("syncfs", ".", err)
	}
	return nil
}

// Statfs describes the file system holding d, as fstatfs(2) on the open
// directory: no path is resolved, so what is measured is where d's entries
// are written.
func (d *Dir) Statfs() (unix.Statfs_t, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(d.fd(), &st); err != nil {
		return st, d.pathErr("statfs", ".", err)
	}
	return st, nil
}

// Lock takes an exclusive advisory lock (flock) on the directory itself and
// blocks until it has it or ctx ends. Locking the directory leaves no lock
// file behind to clean up. Call the returned function to release it.
func (d *Dir) Lock(ctx context.Context) (unlock func(), err error) {
	// A fresh open file description: flock belongs to it, so the lock is
	// independent of d's own descriptor.
	fd, err := openat2(d.fd(), ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, d.pathErr("lock", ".", err)
	}
	const poll = 20 * time.Millisecond
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Close(fd) }, nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			unix.Close(fd)
			return nil, d.pathErr("lock", ".", err)
		}
		select {
		case <-ctx.Done():
			unix.Close(fd)
			return nil, fmt.Errorf("waiting for lock on %s: %w", d.name, ctx.Err())
		case <-time.After(poll):
		}
	}
}
