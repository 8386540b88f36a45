package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"

	"golang.org/x/sys/unix"
)

// Uninstall removes exactly what the installation record lists, then the
// directories kata-deploy created once they are empty, then the record.
// Files it did not install are kept and listed in the report. Uninstalling
// what is not installed does nothing and creates nothing, not even the
// destination's parent directories; an interrupted Uninstall is finished by
// the next one.
func Uninstall(ctx context.Context, hostRoot string, opts ...Option) (*Report, error) {
	c := newConfig(opts)
	t, err := openTarget(ctx, hostRoot, c, removing)
	if err != nil {
		return nil, fmt.Errorf("uninstall kata: %w", err)
	}
	defer t.close()
	rep, err := t.uninstall(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("uninstall kata from %s: %w", t.dest, err)
	}
	return rep, nil
}

// PlanUninstall reports what Uninstall would remove and keep, without
// writing anything.
func PlanUninstall(ctx context.Context, hostRoot string, opts ...Option) (*Report, error) {
	c := newConfig(opts)
	t, err := openTarget(ctx, hostRoot, c, readOnly)
	if err != nil {
		return nil, fmt.Errorf("plan kata uninstallation: %w", err)
	}
	defer t.close()
	rep, err := t.uninstall(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("plan kata uninstallation from %s: %w", t.dest, err)
	}
	return rep, nil
}

func (t *target) uninstall(ctx context.Context, dry bool) (*Report, error) {
	rep := &Report{Dest: t.dest, Installation: t.c.inst}
	if t.live == nil {
		if t.tomb != nil && !dry {
			// An interrupted uninstall: recover removed the tree; the
			// parents it created are left.
			err := t.removeRecordedParents(t.tomb, rep)
			rep.sort()
			return rep, err
		}
		return rep, nil
	}
	if t.rec == nil {
		// Not ours at all: everything there is kept.
		kept, err := t.remaining()
		rep.Kept = kept
		return rep, err
	}
	rep.Layout = t.rec.Layout
	pre := map[string]bool{}
	for _, p := range t.rec.Preexisting {
		pre[p] = true
	}
	entries := slices.Clone(t.rec.Entries)
	// Deepest first, so directories come after what they hold.
	slices.SortFunc(entries, func(a, b recEntry) int { return -comparePaths(a.Path, b.Path) })
	removedDirs := map[string]bool{}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st, err := t.live.Lstat(e.Path)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			// A directory on the way was replaced by a symlink: what is
			// behind it is not ours to remove.
			t.c.log.Warn("not following a symlink that replaced an installed directory", "path", t.host(e.Path))
			continue
		}
		if err != nil {
			return nil, err
		}
		if e.Type == TypeDir {
			if pre[e.Path] || e.Path == "." || entryType(&st) != TypeDir {
				continue
			}
			if !dry {
				err := t.live.Remove(e.Path)
				if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
					continue // holds files that are not ours: kept
				}
				if err != nil {
					return nil, err
				}
			} else if !t.emptyAfter(e.Path) {
				continue
			}
			removedDirs[e.Path] = true
			rep.Removed = append(rep.Removed, t.hostDir(e.Path))
			if !dry {
				t.c.step("unlinked")
			}
			continue
		}
		if !dry {
			if err := t.live.Remove(e.Path); err != nil {
				return nil, err
			}
			t.c.step("unlinked")
		}
		rep.Removed = append(rep.Removed, t.host(e.Path))
	}
	if dry {
		return t.planKept(rep)
	}
	t.c.step("removed")
	if err := t.live.Sync(); err != nil {
		return nil, err
	}
	kept, err := t.remaining()
	if err != nil {
		return nil, err
	}
	rep.Kept = kept
	// The record leaves the tree last, for a rerun to know what to
	// remove; it is kept beside it until the directories are gone.
	if err := t.live.Rename(recordName, t.parent, t.tombName()); err != nil {
		return nil, err
	}
	if err := t.parent.Sync(); err != nil {
		return nil, err
	}
	t.c.step("unrecorded")
	if _, err := t.finishUninstall(t.rec, rep, true); err != nil {
		return nil, err
	}
	rep.sort()
	t.c.log.Info("uninstalled kata", "dest", t.dest, "removed", len(rep.Removed), "kept", len(rep.Kept))
	return rep, nil
}

// finishUninstall removes the emptied tree, the record moved beside it,
// and the parent directories kata-deploy created, when empty. Only the last
// step has a window: stopped right after the record is gone, empty parent
// directories it created stay.
func (t *target) finishUninstall(rec *record, rep *Report, parents bool) (*Report, error) {
	if !slices.Contains(rec.Preexisting, ".") {
		err := t.parent.Remove(t.base)
		switch {
		case err == nil:
			rep.Removed = append(rep.Removed, t.hostDir("."))
		case !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST):
			return nil, err
		}
	}
	t.c.step("rmdir")
	if err := t.parent.Remove(t.tombName()); err != nil {
		return nil, err
	}
	if err := t.parent.Sync(); err != nil {
		return nil, err
	}
	if !parents {
		return rep, nil
	}
	return rep, t.removeRecordedParents(rec, rep)
}

// removeRecordedParents removes the parent directories kata-deploy
// created, innermost first, while they are empty.
func (t *target) removeRecordedParents(rec *record, rep *Report) error {
	removed, err := t.root.RemoveEmptyDirs(rec.Parents)
	for _, p := range removed {
		rep.Removed = append(rep.Removed, p+"/")
	}
	return err
}

// emptyAfter tells, in a plan, whether dir holds only recorded entries.
func (t *target) emptyAfter(dir string) bool {
	ours := map[string]bool{}
	for _, e := range t.rec.Entries {
		ours[e.Path] = true
	}
	entries, err := t.live.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !ours[path.Join(dir, e.Name())] {
			return false
		}
	}
	return true
}

func (t *target) planKept(rep *Report) (*Report, error) {
	ours := map[string]bool{recordName: true}
	for _, e := range t.rec.Entries {
		ours[e.Path] = true
	}
	all, err := t.remaining()
	if err != nil {
		return nil, err
	}
	for _, p := range all {
		rel := p[len(t.dest)+1:]
		if !ours[rel] {
			rep.Kept = append(rep.Kept, p)
		}
	}
	rep.sort()
	return rep, nil
}

// remaining lists the files, symlinks and others left in the installed
// tree, except the record.
func (t *target) remaining() ([]string, error) {
	var out []string
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := t.live.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			rel := path.Join(dir, e.Name())
			if rel == recordName {
				continue
			}
			if e.IsDir() {
				if err := walk(rel); err != nil {
					return err
				}
				continue
			}
			out = append(out, t.host(rel))
		}
		return nil
	}
	err := walk(".")
	return out, err
}

// Status returns the installation record at the destination, or an error
// matching ErrNotInstalled.
func Status(ctx context.Context, hostRoot string, opts ...Option) (*Record, error) {
	c := newConfig(opts)
	t, err := openTarget(ctx, hostRoot, c, readOnly)
	if err != nil {
		return nil, fmt.Errorf("kata installation status: %w", err)
	}
	defer t.close()
	if t.rec == nil {
		return nil, fmt.Errorf("%s: %w", t.dest, ErrNotInstalled)
	}
	return t.rec.public(t.dest), nil
}
