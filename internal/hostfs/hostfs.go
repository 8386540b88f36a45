// Package hostfs gives confined, crash-safe access to files under a host root.
//
// A DaemonSet sees the node's file system at a mount such as /host. Paths
// here are always the host's own paths ("/etc/containerd/config.toml"), and
// symlinks are resolved as the host would resolve them: an absolute symlink
// such as /etc/containerd/config.toml -> /etc/k8s/containerd.toml stays inside
// the root instead of escaping to the container's own /etc. That is why this
// package builds on filepath-securejoin rather than os.Root, which refuses
// every absolute symlink.
//
// Writes are atomic: a temporary file beside the target, fsync, rename, fsync
// of the directory. A reader never sees a half-written file, and a crash
// leaves either the old or the new content.
package hostfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// Root is a host root directory on this machine, such as "/host" or "/".
type Root struct {
	dir string
}

// New returns a Root for dir, which must be an existing directory given
// as an absolute path (see CheckRoot).
func New(dir string) (*Root, error) {
	if err := CheckRoot(dir); err != nil {
		return nil, err
	}
	abs := filepath.Clean(dir)
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("host root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("host root %s: not a directory", abs)
	}
	return &Root{dir: abs}, nil
}

// CheckRoot refuses a host root that is empty or relative: either would be
// taken from the working directory, so a caller that forgot to set it would
// write the host's files below wherever it happened to run.
func CheckRoot(dir string) error {
	if dir == "" {
		return errors.New(`host root is empty: give the absolute directory the host's root file system is at, "/" on the host itself or e.g. "/host" in a pod`)
	}
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("host root %q is a relative path, which would be taken from the working directory: give an absolute one, e.g. /host", dir)
	}
	return nil
}

// Dir returns the root's path on this machine.
func (r *Root) Dir() string { return r.dir }

// HostPath returns where the host path p is on this machine, without
// resolving symlinks. It is for messages and for tools that take a path;
// file access goes through the Root's methods.
func (r *Root) HostPath(p string) string { return filepath.Join(r.dir, clean(p)) }

// Resolve follows symlinks in p as the host would, never leaving the root,
// and returns the resulting host path. The final element need not exist.
func (r *Root) Resolve(p string) (string, error) {
	full, err := securejoin.SecureJoin(r.dir, clean(p))
	if err != nil {
		return "", &fs.PathError{Op: "resolve", Path: p, Err: err}
	}
	rel, err := filepath.Rel(r.dir, full)
	if err != nil {
		return "", &fs.PathError{Op: "resolve", Path: p, Err: err}
	}
	return clean(rel), nil
}

// ReadFile reads the host file p.
func (r *Root) ReadFile(p string) ([]byte, error) {
	f, err := r.open(p, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := readAll(f, f)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: p, Err: err}
	}
	return data, nil
}

// TooLargeError is a host file bigger than a reader accepts.
type TooLargeError struct {
	Path  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: larger than %d MiB, the most kata-deploy reads of such a file", e.Path, e.Limit>>20)
}

// ReadFileLimit reads the host file p, refusing one of more than limit
// bytes before reading it: a config path may point at any file on the
// host, and reading a huge one whole would exhaust a pod's memory.
func (r *Root) ReadFileLimit(p string, limit int64) ([]byte, error) {
	f, err := r.open(p, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > limit {
		return nil, &TooLargeError{Path: p, Limit: limit}
	}
	// A file that grows while read, or is not regular, is held to the
	// limit too.
	data, err := readAll(io.LimitReader(f, limit+1), f)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: p, Err: err}
	}
	if int64(len(data)) > limit {
		return nil, &TooLargeError{Path: p, Limit: limit}
	}
	return data, nil
}

// Stat returns information about the host file p, following symlinks.
func (r *Root) Stat(p string) (fs.FileInfo, error) {
	f, err := r.openPath(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	return fi, nil
}

// Exists reports whether the host path p exists (following symlinks).
// Errors other than "does not exist" are returned.
func (r *Root) Exists(p string) (bool, error) {
	_, err := r.Stat(p)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

// ReadDir lists the host directory p, sorted by name.
func (r *Root) ReadDir(p string) ([]fs.DirEntry, error) {
	f, err := r.open(p, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: p, Err: err}
	}
	sortEntries(entries)
	return entries, nil
}

// MkdirAll creates the host directory p and any missing parents with perm,
// and returns the host paths of the directories it created, outermost first,
// so that a caller can undo exactly what it did.
func (r *Root) MkdirAll(p string, perm fs.FileMode) ([]string, error) {
	resolved, err := r.Resolve(p)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		var missing []string
		found := "/" // the innermost directory that exists
		for d := resolved; d != "/"; d = path.Dir(d) {
			ok, err := r.Exists(d)
			if err != nil {
				return nil, err
			}
			if ok {
				found = d
				break
			}
			missing = append([]string{d}, missing...)
		}
		if len(missing) == 0 {
			return nil, nil
		}
		err := pathrs.MkdirAll(r.dir, resolved, perm)
		if err == nil {
			return missing, nil
		}
		// Another process may have emptied and removed a directory on
		// the path meanwhile (an uninstall releasing the state
		// directory), which the walk reports as a deleted directory:
		// walk again from what exists now.
		if still, _ := r.Exists(found); !still && attempt < 3 {
			continue
		}
		return nil, &fs.PathError{Op: "mkdir", Path: p, Err: err}
	}
}

// WriteFile atomically replaces the host file p with data. Symlinks in p are
// followed, so a config file that is a symlink keeps being one and its target
// is what changes. An existing file keeps its mode and owner; a new one gets
// perm. The parent directory must exist.
func (r *Root) WriteFile(p string, data []byte, perm fs.FileMode) error {
	resolved, err := r.Resolve(p)
	if err != nil {
		return err
	}
	dir, base := path.Split(resolved)
	d, err := r.open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	defer d.Close()
	dirfd := int(d.Fd())

	mode, uid, gid := perm.Perm(), -1, -1
	var st unix.Stat_t
	switch err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil:
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return &fs.PathError{Op: "write", Path: p, Err: errors.New("not a regular file")}
		}
		mode, uid, gid = fs.FileMode(st.Mode).Perm(), int(st.Uid), int(st.Gid)
	case errors.Is(err, unix.ENOENT):
	default:
		return &fs.PathError{Op: "write", Path: p, Err: err}
	}

	sweepTemps(d, base)
	tmp := tempPrefix(base) + strconv.FormatInt(time.Now().UnixNano(), 36)
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(mode))
	if err != nil {
		return &fs.PathError{Op: "write", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), path.Join(dir, tmp))
	committed := false
	defer func() {
		if !committed {
			f.Close()
			_ = unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return &fs.PathError{Op: "write", Path: p, Err: err}
	}
	// The umask may have narrowed the mode; the owner and mode must match
	// what the file had, or what the caller asked for.
	if err := f.Chmod(mode); err != nil {
		return &fs.PathError{Op: "write", Path: p, Err: err}
	}
	if uid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return &fs.PathError{Op: "write", Path: p, Err: err}
		}
	}
	if err := f.Sync(); err != nil {
		return &fs.PathError{Op: "write", Path: p, Err: err}
	}
	if err := f.Close(); err != nil {
		return &fs.PathError{Op: "write", Path: p, Err: err}
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, base); err != nil {
		return &fs.PathError{Op: "write", Path: p, Err: err}
	}
	committed = true
	if err := d.Sync(); err != nil {
		return &fs.PathError{Op: "write", Path: p, Err: fmt.Errorf("sync directory: %w", err)}
	}
	return nil
}

// tempPrefix is the name prefix of WriteFile's temporary files for base.
func tempPrefix(base string) string { return "." + base + ".kata-deploy-" }

// sweepTemps removes the temporary files a writer of base in directory d
// left when it was killed between creating and renaming one: without this
// a crashed install leaves them in the user's config directory for good
// (and keeps a state directory from being removed). Writers of one file
// are serialised by their caller (the node's installer lock), so no live
// writer's temporary is removed. Best effort: a leftover that cannot be
// removed does not fail the write.
func sweepTemps(d *os.File, base string) {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return
	}
	prefix := tempPrefix(base)
	for _, name := range names {
		if strings.HasPrefix(name, prefix) {
			_ = unix.Unlinkat(int(d.Fd()), name, 0)
		}
	}
}

// RemoveTemps removes the temporaries a killed WriteFile of the host file p
// left behind (WriteFile and Remove of p do it too), for a caller about to
// change files that may not write p this time. Best effort, like them.
func (r *Root) RemoveTemps(p string) {
	parent, err := r.Resolve(path.Dir(clean(p)))
	if err != nil {
		return
	}
	d, err := r.open(parent, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return
	}
	defer d.Close()
	sweepTemps(d, path.Base(p))
}

// Remove deletes the host file or empty directory p. A symlink as the last
// element is removed itself, not its target. Removing what does not exist is
// not an error: uninstall steps must be safe to repeat.
func (r *Root) Remove(p string) error {
	p = clean(p)
	parent, err := r.Resolve(path.Dir(p))
	if err != nil {
		return err
	}
	d, err := r.open(parent, unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	base := path.Base(p)
	sweepTemps(d, base)
	err = unix.Unlinkat(int(d.Fd()), base, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(int(d.Fd()), base, unix.AT_REMOVEDIR)
	}
	switch {
	case err == nil:
		return d.Sync()
	case errors.Is(err, unix.ENOENT):
		return nil
	default:
		return &fs.PathError{Op: "remove", Path: p, Err: err}
	}
}

// Lock takes an exclusive advisory lock on the host file p (created if
// missing) and blocks until it has it or ctx ends. Installers that share a
// host serialise on it. Call the returned function to release the lock.
func (r *Root) Lock(ctx context.Context, p string) (unlock func(), err error) {
	fd, err := r.lockFD(ctx, p)
	if err != nil {
		return nil, err
	}
	return func() { unix.Close(fd) }, nil
}

// LockTransient is Lock on a lock file that exists only while someone
// holds it: unlock removes it, so that a host whose lock is free holds no
// lock file. A waiter that gets the lock of a file its holder has
// removed since lets it go and locks the file now at p (creating it), so
// that two holders never lock two different files. The directory of p must
// exist; an error matching fs.ErrNotExist says it does not (someone
// removed it while we waited).
func (r *Root) LockTransient(ctx context.Context, p string) (unlock func(), err error) {
	for {
		fd, err := r.lockFD(ctx, p)
		if err != nil {
			return nil, err
		}
		var held unix.Stat_t
		if err := unix.Fstat(fd, &held); err != nil {
			unix.Close(fd)
			return nil, &fs.PathError{Op: "lock", Path: p, Err: err}
		}
		fi, err := r.Stat(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			unix.Close(fd)
			return nil, err
		}
		if st, ok := statT(fi); ok && uint64(st.Dev) == uint64(held.Dev) && st.Ino == held.Ino {
			return func() {
				// Removed before it is let go: whoever locks it next
				// sees that it is gone and makes a new one.
				_ = r.Remove(p)
				unix.Close(fd)
			}, nil
		}
		unix.Close(fd)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("waiting for lock %s: %w", p, err)
		}
	}
}

func statT(fi fs.FileInfo) (*syscall.Stat_t, bool) {
	if fi == nil {
		return nil, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return st, ok
}

// lockFD opens (creating) the host file p and flocks it, polling until it
// has the lock or ctx ends.
func (r *Root) lockFD(ctx context.Context, p string) (int, error) {
	resolved, err := r.Resolve(p)
	if err != nil {
		return -1, err
	}
	dir, base := path.Split(resolved)
	d, err := r.open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, fmt.Errorf("lock %s: %w", p, err)
	}
	fd, err := unix.Openat(int(d.Fd()), base, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	d.Close()
	if err != nil {
		return -1, &fs.PathError{Op: "lock", Path: p, Err: err}
	}
	const poll = 50 * time.Millisecond
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			unix.Close(fd)
			return -1, &fs.PathError{Op: "lock", Path: p, Err: err}
		}
		select {
		case <-ctx.Done():
			unix.Close(fd)
			return -1, fmt.Errorf("waiting for lock %s: %w", p, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// open opens the host path p inside the root with flags, following symlinks
// the way the host would.
func (r *Root) open(p string, flags int) (*os.File, error) {
	h, err := r.openPath(p)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	f, err := pathrs.Reopen(h, flags|unix.O_CLOEXEC)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return f, nil
}

func (r *Root) openPath(p string) (*os.File, error) {
	h, err := pathrs.OpenInRoot(r.dir, clean(p))
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: unwrapPathError(err)}
	}
	return h, nil
}

// unwrapPathError drops the library's own PathError, whose path is the
// machine-side one, so that errors name the host path the caller knows.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func clean(p string) string { return path.Clean("/" + filepath.ToSlash(p)) }

// FS returns a read-only io/fs view of the root for lookups such as runtime
// detection. Names are host paths without the leading slash, and symlinks
// resolve inside the root as everywhere else in this package.
func (r *Root) FS() fs.StatFS { return rootFS{r} }

type rootFS struct{ r *Root }

func (f rootFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	return f.r.open("/"+name, unix.O_RDONLY)
}

func (f rootFS) Stat(name string) (fs.FileInfo, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrInvalid}
	}
	return f.r.Stat("/" + name)
}

// RemoveEmptyDirs removes dirs, given outermost first, innermost first
// while each is empty, and returns those it removed (one already gone
// counts). It stops, without an error, at the first that holds something,
// cannot be read, or cannot be removed because it is not ours to remove: a
// mount point (EBUSY: a hostPath volume's directory) or on a read-only
// mount (EROFS). It reads each directory before removing it: rmdir(2)
// reports EROFS before ENOTEMPTY, so a directory that is merely not empty
// would otherwise look like an error.
func (r *Root) RemoveEmptyDirs(dirs []string) ([]string, error) {
	var removed []string
	for i := len(dirs) - 1; i >= 0; i-- {
		entries, err := r.ReadDir(dirs[i])
		if errors.Is(err, fs.ErrNotExist) {
			removed = append(removed, dirs[i])
			continue
		}
		if err != nil || len(entries) > 0 {
			return removed, nil
		}
		switch err := r.Remove(dirs[i]); {
		case err == nil:
			removed = append(removed, dirs[i])
		case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EROFS), errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST):
			return removed, nil
		default:
			return removed, err
		}
	}
	return removed, nil
}
