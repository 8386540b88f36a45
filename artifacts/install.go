package artifacts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"golang.org/x/sys/unix"
)

// Install installs the Kata payload at payload (a directory, or a .tar,
// .tar.gz, .tar.xz or .tar.zst file) onto the host whose root directory is
// hostRoot, at /opt/kata unless options say otherwise.
//
// The new tree is staged beside the destination, made durable, and swapped
// in with one atomic rename: a process sees the old tree or the new one,
// never a half-written file, and a running binary is never written to (no
// "text file busy"). A crash at any point leaves the old or the new tree in
// place; the next Install, or Uninstall, finishes or rolls back. Files that
// did not change are hard-linked from the installed tree, and installing the
// same payload again writes nothing. Files in the destination that
// kata-deploy did not install are kept.
func Install(ctx context.Context, hostRoot, payload string, opts ...Option) (*Report, error) {
	c := newConfig(opts)
	t, err := openTarget(ctx, hostRoot, c, installing)
	if err != nil {
		return nil, fmt.Errorf("install kata: %w", err)
	}
	defer t.close()
	previous := t.rec != nil
	rep, err := t.install(ctx, payload, false)
	if err != nil {
		t.removeParents()
		return nil, fmt.Errorf("install kata from %s to %s: %w", payload, t.dest, err)
	}
	rep.Previous = previous
	return rep, nil
}

// removeParents removes, when empty, the parent directories this run
// created, so that a failed first install leaves the host as it was.
func (t *target) removeParents() {
	if t.live != nil {
		return
	}
	_, _ = t.root.RemoveEmptyDirs(t.parents)
}

// Plan reports what Install would change, without writing anything. It
// runs the checks Install runs before it writes, the room on the
// destination's file system included, also when the destination's
// directory does not exist yet: a plan that succeeds is an install that
// would not be refused for them.
func Plan(ctx context.Context, hostRoot, payload string, opts ...Option) (*Report, error) {
	c := newConfig(opts)
	t, err := openTarget(ctx, hostRoot, c, readOnly)
	if err != nil {
		return nil, fmt.Errorf("plan kata installation: %w", err)
	}
	defer t.close()
	previous := t.rec != nil
	rep, err := t.install(ctx, payload, true)
	if err != nil {
		return nil, fmt.Errorf("plan kata installation from %s to %s: %w", payload, t.dest, err)
	}
	rep.Previous = previous
	return rep, nil
}

func (t *target) install(ctx context.Context, payload string, dry bool) (*Report, error) {
	fi, err := os.Stat(payload)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return t.installDir(ctx, payload, dry)
	}
	return t.installTarball(ctx, payload, dry)
}

// plan is the tree to install and how it differs from the installed one.
type plan struct {
	layout    Layout
	nodes     []*node // sorted by path, parents first
	shims     map[string]string
	rep       *Report
	stale     bool     // the record's cached identities need refreshing
	mustWrite bool     // the tree must be rebuilt (changes, or no record yet)
	pre       []string // directories found in place at the first install
}

func sortNodes(nodes []*node) {
	slices.SortFunc(nodes, func(a, b *node) int { return comparePaths(a.path, b.path) })
}

// comparePaths orders paths so that a directory comes right before its
// content ("a", "a/b", "a-b"), which a plain string order does not.
func comparePaths(a, b string) int {
	if a == b {
		return 0
	}
	if a == "." {
		return -1
	}
	if b == "." {
		return 1
	}
	return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/"))
}

func (t *target) installDir(ctx context.Context, dir string, dry bool) (*Report, error) {
	p, err := openDirPayload(dir)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	nodes, err := p.walk()
	if err != nil {
		return nil, err
	}
	m, err := p.readManifest()
	if err != nil {
		return nil, err
	}
	if err := applyManifest(nodes, m); err != nil {
		return nil, err
	}
	read := func(rel string) ([]byte, error) {
		f, err := p.dir.Open(p.rel(rel))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return io.ReadAll(io.LimitReader(f, maxConfig))
	}
	// Without a manifest, a source file whose identity is the one recorded
	// at the last install has the digest recorded then: no need to read it.
	if m == nil && t.rec != nil {
		idx := t.rec.index()
		for _, n := range nodes {
			if r := idx[n.path]; n.typ == TypeFile && r != nil && r.Src != nil && n.srcKey != nil && *r.Src == *n.srcKey {
				n.digest = r.Digest
			}
		}
	}
	buf := make([]byte, bufSize)
	pl, err := t.plan(ctx, nodes, read, func(n *node) (string, error) {
		return hashFile(p.dir, n.src, buf)
	})
	if err != nil {
		return nil, err
	}
	if pl.mustWrite {
		// Refuse before staging what will not fit beside the installed
		// tree; a plan says so too.
		r, err := t.measureRoom()
		if err != nil {
			return nil, err
		}
		r.claimNodes(pl.nodes)
		r.claimRecord(pl.nodes)
		if err := r.check(false); err != nil {
			return nil, err
		}
	}
	if dry || !pl.mustWrite {
		return t.finishUnchanged(pl, nil, dry)
	}
	t.c.log.Info("installing kata", "dest", t.dest, "layout", pl.layout,
		"added", len(pl.rep.Added), "changed", len(pl.rep.Changed), "removed", len(pl.rep.Removed))
	err = t.stage(ctx, pl, nil, func(st *hostfs.Dir) error {
		return t.copyFiles(ctx, st, p, pl.nodes)
	})
	if err != nil {
		return nil, err
	}
	return pl.rep, nil
}

const maxConfig = 4 << 20

// plan completes the payload's nodes with the generated ones and compares
// them with the installed tree. srcDigest returns a payload file's digest
// when neither the manifest nor the record knew it.
func (t *target) plan(ctx context.Context, nodes []*node, read func(string) ([]byte, error), srcDigest func(*node) (string, error)) (*plan, error) {
	layout, err := detectLayout(nodes)
	if err != nil {
		return nil, err
	}
	gen, shims, err := generate(layout, nodes, t.dest, t.c.settings, read)
	if err != nil {
		return nil, err
	}
	if layout != LayoutStatic && t.dest != defaultDest() {
		t.c.log.Warn("Kata 1.x reads no drop-ins: its configuration still names /opt/kata", "dest", t.dest)
	}
	nodes = append(nodes, gen...)
	sortNodes(nodes)
	pl := &plan{layout: layout, nodes: nodes, shims: shims}
	pl.rep = &Report{Dest: t.dest, Installation: t.c.inst, Layout: layout, Shims: map[string]string{}}
	for shim, p := range shims {
		pl.rep.Shims[shim] = t.host(p)
	}
	// Refuse handlers this payload would not run while nothing is written
	// (a tarball is only staged so far).
	if err := t.checkHandlers(pl.rep); err != nil {
		return nil, err
	}
	if err := t.diff(ctx, pl, srcDigest); err != nil {
		return nil, err
	}
	pl.rep.sort()
	pl.mustWrite = pl.rep.HasChanges() || t.rec == nil || t.rec.Layout != layout || !maps.Equal(t.rec.Shims, shims)
	return pl, nil
}

// diff fills the report and marks the nodes that can be kept from the
// installed tree.
func (t *target) diff(ctx context.Context, pl *plan, srcDigest func(*node) (string, error)) error {
	rep := pl.rep
	var idx map[string]*recEntry
	if t.rec != nil {
		idx = t.rec.index()
	}
	desired := make(map[string]bool, len(pl.nodes))
	var buf []byte
	for _, n := range pl.nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		desired[n.path] = true
		name := t.host(n.path)
		if n.typ == TypeDir {
			name = t.hostDir(n.path)
		}
		if t.live == nil {
			rep.Added = append(rep.Added, name)
			continue
		}
		st, err := t.live.Lstat(n.path)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			rep.Added = append(rep.Added, name)
			continue
		}
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			// A directory on the way is now a symlink: the new tree puts
			// a real one back, and nothing behind the link is touched.
			rep.Changed = append(rep.Changed, name)
			continue
		}
		if err != nil {
			return err
		}
		same := entryType(&st) == n.typ && (n.typ == TypeSymlink || modeOf(&st) == n.mode) && t.c.ownedAsInstalled(&st)
		switch {
		case !same:
		case n.typ == TypeSymlink:
			// A symlink's target cannot change in place: same inode and
			// ctime as recorded means the recorded target.
			if r := idx[n.path]; r != nil && r.Type == TypeSymlink && r.Stat != nil && *r.Stat == keyOf(&st) {
				same = r.Target == n.target
				break
			}
			target, err := t.live.Readlink(n.path)
			if err != nil {
				return err
			}
			same = target == n.target
		case n.typ == TypeFile:
			same = st.Size == n.size
			if !same {
				break
			}
			cur := ""
			r := idx[n.path]
			if r != nil && r.Type == TypeFile && r.Stat != nil && *r.Stat == keyOf(&st) {
				cur = r.Digest
			} else {
				// Not what was recorded (or no record): read it.
				if buf == nil {
					buf = make([]byte, bufSize)
				}
				if cur, err = hashFile(t.live, n.path, buf); err != nil {
					return err
				}
				pl.stale = true
			}
			want := n.want
			if want == "" {
				if n.digest == "" {
					if srcDigest == nil {
						return fmt.Errorf("%s: digest unknown", n.path)
					}
					if n.digest, err = srcDigest(n); err != nil {
						return err
					}
				}
				want = n.digest
			}
			same = cur == want
			if same {
				n.keep, n.digest = true, want
				if r != nil && n.srcKey != nil && (r.Src == nil || *r.Src != *n.srcKey) {
					pl.stale = true
				}
			}
		}
		if !same {
			rep.Changed = append(rep.Changed, name)
		}
	}
	if t.rec != nil && t.live != nil {
		for _, r := range t.rec.Entries {
			if desired[r.Path] {
				continue
			}
			if _, err := t.live.Lstat(r.Path); err == nil {
				name := t.host(r.Path)
				if r.Type == TypeDir {
					name = t.hostDir(r.Path)
				}
				rep.Removed = append(rep.Removed, name)
			}
		}
	}
	return nil
}

// finishUnchanged ends a run that needs no new tree: at most the record's
// cached identities are refreshed in place.
func (t *target) finishUnchanged(pl *plan, source *statKey, dry bool) (*Report, error) {
	if !dry && t.rec != nil && (pl.stale || (source != nil && (t.rec.Source == nil || *t.rec.Source != *source))) {
		rec := t.newRecord(pl, source)
		if err := t.refreshStats(rec); err != nil {
			return nil, err
		}
		t.c.log.Info("refreshed the installation record", "dest", t.dest)
	} else if !dry {
		t.c.log.Info("kata already installed", "dest", t.dest)
	}
	pl.rep.Kept = nil
	return pl.rep, nil
}

// newRecord describes the tree of pl.
func (t *target) newRecord(pl *plan, source *statKey) *record {
	rec := &record{Version: recordVersion, Layout: pl.layout, Source: source, Shims: pl.shims}
	for _, n := range pl.nodes {
		rec.Entries = append(rec.Entries, recEntry{
			Path: n.path, Type: n.typ, Mode: uint32(n.mode), Size: n.size,
			Digest: n.digest, Target: n.target, Stat: n.stat, Src: n.srcKey,
		})
	}
	if t.rec != nil {
		rec.Preexisting = t.rec.Preexisting
		rec.Parents = t.rec.Parents
	} else {
		rec.Preexisting = pl.pre
		if t.tomb != nil {
			rec.Parents = t.tomb.Parents
		}
	}
	for _, p := range t.parents {
		if !slices.Contains(rec.Parents, p) {
			rec.Parents = append(rec.Parents, p)
		}
	}
	return rec
}

// refreshStats records the current identity of every installed file and
// replaces the record in place.
func (t *target) refreshStats(rec *record) error {
	for i := range rec.Entries {
		e := &rec.Entries[i]
		if e.Type != TypeFile {
			continue
		}
		st, err := t.live.Lstat(e.Path)
		if err != nil {
			return err
		}
		k := keyOf(&st)
		e.Stat = &k
	}
	return replaceRecord(t.live, rec)
}

// copyFiles fills the staging tree's files from a directory payload, two
// at a time: hashing and copying a large file is CPU-bound enough that a
// second worker pays off.
func (t *target) copyFiles(ctx context.Context, st *hostfs.Dir, p *dirPayload, nodes []*node) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan *node)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	for range max(1, t.c.workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, bufSize)
			for n := range jobs {
				if ctx.Err() != nil {
					continue
				}
				if err := t.copyOne(st, p, n, buf); err != nil {
					fail(err)
				}
			}
		}()
	}
	for _, n := range nodes {
		if n.typ != TypeFile || n.keep || n.data != nil {
			continue
		}
		select {
		case jobs <- n:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

func (t *target) copyOne(st *hostfs.Dir, p *dirPayload, n *node, buf []byte) error {
	f, err := p.dir.Open(n.src)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := copyFileRange(st, n, f, buf, t.c.perFileSync, t.c.noKick); err != nil {
		return err
	}
	t.c.step("copied")
	return nil
}

// stage builds the new tree beside the installed one and swaps it in.
// fill writes the payload's files that are neither kept nor generated; for
// a tarball they are already staged and fill is nil.
func (t *target) stage(ctx context.Context, pl *plan, source *statKey, fill func(*hostfs.Dir) error) (err error) {
	st, err := t.staging(pl.nodes[0].mode, fill == nil)
	if err != nil {
		return err
	}
	swapped := false
	defer func() {
		st.Close()
		if err != nil && !swapped {
			// Nothing was installed: drop the staging tree.
			_ = t.parent.RemoveAll(t.stagingName())
		}
	}()
	t.c.step("staging")
	if fill != nil {
		if err := t.mkTree(st, pl.nodes); err != nil {
			return err
		}
		if err := fill(st); err != nil {
			return err
		}
	} else {
		// A tarball's own entries are staged already; add ours.
		gen := slices.DeleteFunc(slices.Clone(pl.nodes), func(n *node) bool { return !n.gen })
		if err := t.mkTree(st, gen); err != nil {
			return err
		}
	}
	buf := make([]byte, bufSize)
	for _, n := range pl.nodes {
		switch {
		case n.typ == TypeFile && n.keep && fill != nil:
			if err := t.live.Link(n.path, st, n.path); err != nil {
				return err
			}
		case n.typ == TypeFile && n.data != nil:
			if err := copyFile(st, n, bytes.NewReader(n.data), buf, t.c.perFileSync, t.c.noKick); err != nil {
				return err
			}
		}
	}
	if err := t.carryForeign(st, pl); err != nil {
		return err
	}
	rec := t.newRecord(pl, source)
	if err := writeRecordNew(st, rec, t.c.perFileSync); err != nil {
		return err
	}
	t.c.step("staged")
	if err := t.durable(st); err != nil {
		return err
	}
	t.c.step("synced")
	if err := t.swap(); err != nil {
		return err
	}
	swapped = true
	t.c.step("swapped")
	// What lies at the staging name now is the old tree.
	if err := t.parent.RemoveAll(t.stagingName()); err != nil {
		return err
	}
	if err := t.parent.RemoveAll(t.oldName()); err != nil {
		return err
	}
	t.c.step("cleaned")
	if err := t.openLive(); err != nil {
		return err
	}
	// Linking and unlinking changed the kept files' ctime: record it now so
	// that the next run recognises them without reading them.
	if slices.ContainsFunc(pl.nodes, func(n *node) bool { return n.keep }) {
		if err := t.refreshStats(rec); err != nil {
			return err
		}
	}
	t.c.step("recorded")
	return nil
}

// staging creates the empty staging tree.
//
// Its root is the one directory created in a directory of the host's: one
// with the setgid bit (an /opt shared with a group) gives it that group,
// which is taken back here. Everything else is created below it, in
// directories that are the installer's and have no setgid bit, so it is
// the installer's already, whoever owned the payload.
func (t *target) staging(mode fs.FileMode, exists bool) (*hostfs.Dir, error) {
	if !exists {
		if err := t.parent.Mkdir(t.stagingName(), mode); err != nil {
			return nil, err
		}
	}
	st, err := t.parent.OpenDir(t.stagingName())
	if err != nil {
		return nil, err
	}
	if !exists {
		s, err := st.Lstat(".")
		if err == nil && !t.c.ownedAsInstalled(&s) {
			err = st.Chown(".", t.c.uid, t.c.gid)
		}
		if err != nil {
			st.Close()
			return nil, err
		}
	}
	return st, nil
}

// mkTree creates the directories and symlinks of nodes below st.
func (t *target) mkTree(st *hostfs.Dir, nodes []*node) error {
	for _, n := range nodes {
		switch {
		case n.path == ".":
			if err := st.Chmod(".", n.mode); err != nil {
				return err
			}
		case n.typ == TypeDir:
			if err := st.Mkdir(n.path, n.mode); err != nil {
				return err
			}
		case n.typ == TypeSymlink:
			if err := st.Symlink(n.target, n.path); err != nil {
				return err
			}
			if err := statNode(st, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// statNode records the identity of n as staged. For a symlink it spares
// the next run a readlink (which can update its atime: a write).
func statNode(st *hostfs.Dir, n *node) error {
	s, err := st.Lstat(n.path)
	if err != nil {
		return err
	}
	k := keyOf(&s)
	n.stat = &k
	return nil
}

// carryForeign hard-links into the staging tree every entry of the
// installed tree that kata-deploy did not install, so the swap keeps them.
// They are listed in the report as kept.
func (t *target) carryForeign(st *hostfs.Dir, pl *plan) error {
	if t.live == nil {
		return nil
	}
	ours := map[string]bool{recordName: true}
	if t.rec != nil {
		for _, e := range t.rec.Entries {
			ours[e.Path] = true
		}
	}
	for _, n := range pl.nodes {
		ours[n.path] = true
	}
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := t.live.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			rel := path.Join(dir, e.Name())
			if dir == "." && strings.HasPrefix(e.Name(), recordName+".tmp-") {
				continue
			}
			if e.IsDir() {
				if t.rec == nil {
					pl.preexisting(rel)
				}
				if !ours[rel] {
					if err := t.ensureDir(st, rel); err != nil {
						return err
					}
				}
				if err := walk(rel); err != nil {
					return err
				}
				continue
			}
			if ours[rel] {
				continue
			}
			if err := t.ensureDir(st, path.Dir(rel)); err != nil {
				return err
			}
			if err := t.live.Link(rel, st, rel); err != nil {
				return err
			}
			pl.rep.Kept = append(pl.rep.Kept, t.host(rel))
		}
		return nil
	}
	if t.rec == nil {
		pl.preexisting(".")
	}
	return walk(".")
}

func (pl *plan) preexisting(rel string) { pl.pre = append(pl.pre, rel) }

// ensureDir makes rel a directory in the staging tree, with the mode it has
// in the installed tree; a file of the new tree in the way is a conflict.
func (t *target) ensureDir(st *hostfs.Dir, rel string) error {
	if rel == "." {
		return nil
	}
	s, err := st.Lstat(rel)
	if err == nil {
		if entryType(&s) != TypeDir {
			return &ConflictError{Path: t.host(rel)}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		if errors.Is(err, unix.ENOTDIR) {
			return &ConflictError{Path: t.host(rel)}
		}
		return err
	}
	if err := t.ensureDir(st, path.Dir(rel)); err != nil {
		return err
	}
	ls, err := t.live.Lstat(rel)
	if err != nil {
		return err
	}
	return st.Mkdir(rel, modeOf(&ls))
}

// durable makes the staging tree durable before it is swapped in: one
// syncfs of the file system, or (measured against it) an fsync of every
// directory after the per-file fsyncs.
func (t *target) durable(st *hostfs.Dir) error {
	if !t.c.perFileSync {
		return st.SyncFS()
	}
	var walk func(d *hostfs.Dir) error
	walk = func(d *hostfs.Dir) error {
		entries, err := d.ReadDir(".")
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			sub, err := d.OpenDir(e.Name())
			if err != nil {
				return err
			}
			err = walk(sub)
			sub.Close()
			if err != nil {
				return err
			}
		}
		return d.Sync()
	}
	return walk(st)
}

// swap puts the staging tree in place of the installed one.
func (t *target) swap() error {
	if t.live == nil {
		if err := t.parent.RenameNoReplace(t.stagingName(), t.parent, t.base); err != nil {
			return err
		}
		return t.parent.Sync()
	}
	err := errors.ErrUnsupported
	if !t.c.noExchange {
		err = t.parent.Exchange(t.stagingName(), t.parent, t.base)
	}
	if errors.Is(err, errors.ErrUnsupported) {
		// No RENAME_EXCHANGE here: two renames, with a moment when the
		// destination is missing; recover() rolls back if we stop there.
		t.c.log.Warn("file system cannot exchange directories; using two renames", "dest", t.dest)
		if err := t.parent.Rename(t.base, t.parent, t.oldName()); err != nil {
			return err
		}
		t.c.step("moved-old")
		err = t.parent.Rename(t.stagingName(), t.parent, t.base)
	}
	if err != nil {
		return err
	}
	return t.parent.Sync()
}
