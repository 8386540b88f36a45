package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"golang.org/x/sys/unix"
)

// target is an installation destination, opened.
type target struct {
	c       *config
	root    *hostfs.Root
	dest    string      // host path as configured, e.g. /opt/kata
	dir     string      // host path of the directory holding the tree, symlinks resolved
	parent  *hostfs.Dir // the directory holding the tree; nil if missing
	base    string      // the tree's name in parent
	live    *hostfs.Dir // the installed tree; nil if missing
	rec     *record     // its record; nil if none
	parents []string    // parent directories this run created
	tomb    *record     // the record of an interrupted uninstall, finished by recover
	unlock  func()
}

// access is what a run does to the destination.
type access int

const (
	// readOnly writes nothing: a plan or a status.
	readOnly access = iota
	// removing takes the host lock and finishes or rolls back an
	// interrupted run, but creates nothing: an uninstall of what is not
	// there must leave the host as it was.
	removing
	// installing also creates the destination's missing parents.
	installing
)

// openTarget opens the destination for what a run does to it.
func openTarget(ctx context.Context, hostRoot string, c *config, how access) (*target, error) {
	root, err := hostfs.New(hostRoot)
	if err != nil {
		return nil, err
	}
	if err := c.inst.Validate(); err != nil {
		return nil, err
	}
	t := &target{c: c, root: root, dest: c.inst.Dest(), unlock: func() {}}
	// The host resolves symlinks in the destination (an /opt that links to
	// /var/opt is common on immutable systems): stage beside what it
	// resolves to, so the final rename stays within one directory.
	resolved, err := root.Resolve(t.dest)
	if err != nil {
		return nil, err
	}
	dir := path.Dir(resolved)
	t.dir, t.base = dir, path.Base(resolved)
	if how == readOnly {
		if ok, err := root.Exists(dir); err != nil || !ok {
			return t, err
		}
		if t.parent, err = root.OpenDir(dir); err != nil {
			return nil, err
		}
	}
	for attempt := 0; how != readOnly; attempt++ {
		if how == installing {
			created, err := root.MkdirAll(dir, 0o755)
			if err != nil {
				return nil, err
			}
			t.parents = append(t.parents, created...)
		}
		if t.parent, err = root.OpenDir(dir); err != nil {
			if how == removing && errors.Is(err, fs.ErrNotExist) {
				// Nothing was ever installed here, or an uninstall
				// removed it all: nothing to lock or to finish.
				return t, nil
			}
			return nil, err
		}
		// Concurrent installers serialise on the directory that holds the
		// tree: it outlives every tree swapped in and out of it, and a
		// directory lock leaves no lock file behind after uninstall.
		unlock, err := t.parent.Lock(ctx)
		if err != nil {
			t.parent.Close()
			return nil, err
		}
		// An uninstall that held the lock may have removed the directory
		// meanwhile: then lock the one that is there now.
		if same, err := t.sameDir(dir); err != nil || same || attempt == 3 {
			t.unlock = unlock
			if err == nil && !same {
				err = fmt.Errorf("%s keeps being replaced", dir)
			}
			if err != nil {
				t.close()
				return nil, err
			}
			break
		}
		unlock()
		t.parent.Close()
	}
	if how != readOnly {
		if err := t.recover(); err != nil {
			t.close()
			return nil, err
		}
	}
	if err := t.openLive(); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// sameDir tells whether the host path dir still is the directory t.parent.
func (t *target) sameDir(dir string) (bool, error) {
	now, err := t.root.OpenDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer now.Close()
	a, err := now.Lstat(".")
	if err != nil {
		return false, err
	}
	b, err := t.parent.Lstat(".")
	if err != nil {
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}

func (t *target) close() {
	if t.live != nil {
		t.live.Close()
	}
	t.unlock()
	if t.parent != nil {
		t.parent.Close()
	}
}

func (t *target) stagingName() string { return "." + t.base + ".kd-new" }
func (t *target) oldName() string     { return "." + t.base + ".kd-old" }

// tombName is where Uninstall moves the record once the tree is emptied,
// so that an interrupted uninstall still knows which directories to remove.
func (t *target) tombName() string { return "." + t.base + ".kd-uninstalled" }

func (t *target) openLive() error {
	if t.live != nil {
		t.live.Close()
		t.live, t.rec = nil, nil
	}
	st, err := t.parent.Lstat(t.base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return &ConflictError{Path: t.dest}
	}
	if t.live, err = t.parent.OpenDir(t.base); err != nil {
		return err
	}
	t.rec, err = loadRecord(t.live)
	return err
}

// recover finishes or rolls back a run that stopped half-way. The tree at
// the destination is always complete, old or new; what lies at the staging
// name is either an unfinished new tree or the old tree already swapped
// out, garbage in both cases.
func (t *target) recover() error {
	_, err := t.parent.Lstat(t.oldName())
	switch {
	case err == nil:
		_, lerr := t.parent.Lstat(t.base)
		if errors.Is(lerr, fs.ErrNotExist) {
			// Stopped between the two renames that stand in for an
			// exchange: put the old tree back.
			t.c.log.Warn("rolling back an interrupted installation", "dest", t.dest)
			if err := t.parent.Rename(t.oldName(), t.parent, t.base); err != nil {
				return fmt.Errorf("roll back %s: %w", t.dest, err)
			}
		} else {
			t.c.log.Warn("removing the tree an interrupted installation replaced", "dest", t.dest)
			if err := t.parent.RemoveAll(t.oldName()); err != nil {
				return err
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	tomb, err := loadRecordAt(t.parent, t.tombName())
	if err != nil {
		return err
	}
	if tomb != nil {
		t.c.log.Warn("finishing an interrupted uninstallation", "dest", t.dest)
		// The parents stay for now: this run works in them. Uninstall
		// removes them; Install keeps them recorded as created.
		if _, err := t.finishUninstall(tomb, &Report{}, false); err != nil {
			return err
		}
		t.tomb = tomb
	}
	if _, err := t.parent.Lstat(t.stagingName()); err == nil {
		t.c.log.Warn("removing what an interrupted installation left beside the tree", "dest", t.dest)
		if err := t.parent.RemoveAll(t.stagingName()); err != nil {
			return err
		}
	}
	return t.parent.Sync()
}

// entryType returns the type of a raw stat, "" for anything else.
func entryType(st *unix.Stat_t) FileType {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return TypeDir
	case unix.S_IFREG:
		return TypeFile
	case unix.S_IFLNK:
		return TypeSymlink
	}
	return ""
}

// modeOf returns the permission and special bits of a raw stat. An
// installed entry never has a special bit (see installMode), so one found
// set makes the entry differ from what was installed.
func modeOf(st *unix.Stat_t) fs.FileMode {
	m := fs.FileMode(st.Mode & 0o777)
	if st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	if st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	return m
}

// installMode is the mode an entry of the payload is installed with: its
// permission bits less write for group and others, exec bits kept. The
// shim and the hypervisors run as root, so whoever could write them, or a
// directory on their way, could run anything as root. The sticky bit goes
// too: it only matters in a directory others may write to, and there is
// none. Payloads with a setuid or setgid file are refused outright
// (ErrUnsafeSetuid); a directory's setgid bit is dropped, since it would
// hand its group to what is created below it.
func installMode(m fs.FileMode) fs.FileMode { return m.Perm() &^ 0o022 }

// ownedAsInstalled tells whether a raw stat has the owner installed
// entries get: the user running the install, root (0:0) on a node.
func (c *config) ownedAsInstalled(st *unix.Stat_t) bool {
	return int(st.Uid) == c.uid && int(st.Gid) == c.gid
}

func (t *target) host(rel string) string { return hostJoin(t.dest, rel) }

func (t *target) hostDir(rel string) string { return hostJoin(t.dest, rel) + "/" }
