package artifacts

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/internal/tarsafe"
	"github.com/kata-deploy/kata-deploy/runtime"
	"golang.org/x/sys/unix"
)

// installTarball installs from a tarball in one streaming pass: entries are
// checked and written into the staging tree as they come, so the archive is
// decompressed once and memory stays flat. A refused entry, a bad checksum
// or a size beyond the limit drops the staging tree: nothing is installed.
func (t *target) installTarball(ctx context.Context, file string, dry bool) (*Report, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	source := keyOf(&st)
	if rep, ok, err := t.unchangedTarball(source); err != nil || ok {
		return rep, err
	}

	// The archive's sizes are known only as its headers arrive: each is
	// checked against the room before its content is written, and the
	// first that does not fit drops the staging tree. A pre-scan of the
	// headers would decompress the archive twice (docs/artifacts-performance.md).
	space, err := t.measureRoom()
	if err != nil {
		return nil, err
	}
	var stage *hostfs.Dir
	if !dry {
		if stage, err = t.staging(0o755, false); err != nil {
			return nil, err
		}
		t.c.step("staging")
	}
	keepStaging := false
	defer func() {
		if stage != nil {
			stage.Close()
			if !keepStaging {
				_ = t.parent.RemoveAll(t.stagingName())
			}
		}
	}()
	res, err := readTarball(ctx, f, t.c, stage, space)
	if err != nil {
		return nil, err
	}
	if err := applyManifest(res.nodes, res.manifest); err != nil {
		return nil, err
	}
	for _, n := range res.nodes {
		if n.want != "" && n.digest != n.want {
			return nil, &ChecksumError{Path: n.path, Want: n.want, Got: n.digest}
		}
	}
	read := func(rel string) ([]byte, error) {
		if data, ok := res.configs[rel]; ok {
			return data, nil
		}
		return nil, fmt.Errorf("%s: %w", rel, fs.ErrNotExist)
	}
	pl, err := t.plan(ctx, res.nodes, read, nil)
	if err != nil {
		return nil, err
	}
	if pl.mustWrite {
		// What kata-deploy adds to the archive's tree, and the record.
		space.claimNodes(slices.DeleteFunc(slices.Clone(pl.nodes), func(n *node) bool { return !n.gen }))
		space.claimRecord(pl.nodes)
		if err := space.check(false); err != nil {
			return nil, err
		}
	}
	if dry || !pl.mustWrite {
		return t.finishUnchanged(pl, &source, dry)
	}
	t.c.log.Info("installing kata", "dest", t.dest, "layout", pl.layout, "tarball", file,
		"added", len(pl.rep.Added), "changed", len(pl.rep.Changed), "removed", len(pl.rep.Removed))
	// The staging tree is stage's to keep or drop from here.
	keepStaging = true
	stage.Close()
	stage = nil
	for _, n := range pl.nodes {
		n.keep = false // everything is already staged from the archive
	}
	if err := t.stage(ctx, pl, &source, nil); err != nil {
		return nil, err
	}
	return pl.rep, nil
}

// unchangedTarball reports, without reading the archive, that it is the
// one installed last and the installed tree still matches its record.
func (t *target) unchangedTarball(source statKey) (*Report, bool, error) {
	if t.rec == nil || t.rec.Source == nil || *t.rec.Source != source || t.live == nil {
		return nil, false, nil
	}
	var nodes []*node
	for _, e := range t.rec.Entries {
		st, err := t.live.Lstat(e.Path)
		if err != nil || entryType(&st) != e.Type {
			return nil, false, nil
		}
		switch e.Type {
		case TypeFile:
			// The identity covers the owner: chown changes the ctime.
			if e.Stat == nil || *e.Stat != keyOf(&st) || uint32(modeOf(&st)) != e.Mode {
				return nil, false, nil
			}
		case TypeDir:
			if uint32(modeOf(&st)) != e.Mode || !t.c.ownedAsInstalled(&st) {
				return nil, false, nil
			}
		}
		nodes = append(nodes, &node{path: e.Path, typ: e.Type, mode: fs.FileMode(e.Mode), digest: e.Digest, target: e.Target})
	}
	// Settings may have changed: generate again from the installed
	// configurations and compare with what is recorded.
	byPath := map[string]*node{}
	for _, n := range nodes {
		byPath[n.path] = n
	}
	var payload []*node
	for _, n := range nodes {
		if !isGenerated(n.path) {
			payload = append(payload, n)
		}
	}
	gen, shims, err := generate(t.rec.Layout, payload, t.dest, t.c.settings, func(rel string) ([]byte, error) {
		f, err := t.live.Open(rel)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return io.ReadAll(io.LimitReader(f, maxConfig))
	})
	if err != nil {
		return nil, false, err
	}
	if len(gen)+len(payload) != len(nodes) || len(shims) != len(t.rec.Shims) {
		return nil, false, nil
	}
	for _, g := range gen {
		n := byPath[g.path]
		if n == nil || n.typ != g.typ || n.target != g.target || (g.typ == TypeFile && n.digest != g.digest) {
			return nil, false, nil
		}
	}
	rep := &Report{Dest: t.dest, Installation: t.c.inst, Layout: t.rec.Layout, Shims: map[string]string{}}
	for shim, p := range t.rec.Shims {
		rep.Shims[shim] = t.host(p)
	}
	if err := t.checkHandlers(rep); err != nil {
		return nil, false, err
	}
	t.c.log.Info("kata already installed", "dest", t.dest)
	return rep, true, nil
}

// isGenerated tells the entries kata-deploy adds from those of a payload:
// everything in the directories that hold each shim's own (see
// runtime.Shim.ConfigPath).
func isGenerated(p string) bool {
	for _, rs := range []bool{false, true} {
		d := path.Dir(path.Dir(runtime.Shim{Name: "x", RuntimeRS: rs, ConfigFile: "x"}.ConfigPath()))
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// tarResult is what one pass over a tarball found.
type tarResult struct {
	nodes    []*node
	manifest map[string]string
	configs  map[string][]byte // shim configurations, for the drop-ins
}

// readTarball reads the archive, writing its tree below stage (nil: only
// hash, for a plan). A kata-static archive holds its tree under opt/kata;
// any other is taken to hold the tree at its root (Kata 1.x). Every entry
// is claimed from space before it is written.
func readTarball(ctx context.Context, r io.Reader, c *config, stage *hostfs.Dir, space *room) (*tarResult, error) {
	tr, err := tarsafe.NewReader(r, tarsafe.Limits{MaxBytes: c.maxSize, MaxEntries: c.maxEntries})
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	res := &tarResult{configs: map[string][]byte{}}
	root := &node{path: ".", typ: TypeDir, mode: 0o755}
	res.nodes = append(res.nodes, root)
	byPath := map[string]*node{".": root}
	tree := "" // "" undecided, staticRoot, or "."
	var manifest []byte
	manifestName := ""
	buf := make([]byte, bufSize)

	// mkdirs makes sure the parents of rel exist: archives may leave them
	// implied.
	var mkdirs func(rel string) error
	mkdirs = func(rel string) error {
		if n, ok := byPath[rel]; ok {
			if n.typ != TypeDir {
				return &EntryError{Entry: rel, Err: ErrUnsafeBelowLink}
			}
			return nil
		}
		if err := mkdirs(path.Dir(rel)); err != nil {
			return err
		}
		n := &node{path: rel, typ: TypeDir, mode: 0o755}
		byPath[rel] = n
		res.nodes = append(res.nodes, n)
		space.claimDir()
		if err := space.check(true); err != nil {
			return err
		}
		if stage != nil {
			return stage.Mkdir(rel, n.mode)
		}
		return nil
	}

	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		name := e.Name
		if e.Type == tarsafe.File && isManifest(name) {
			if e.Size > maxManifest {
				return nil, &EntryError{Entry: e.Raw, Err: fmt.Errorf("manifest larger than %d bytes", maxManifest)}
			}
			if manifest, err = io.ReadAll(tr); err != nil {
				return nil, &EntryError{Entry: e.Raw, Err: err}
			}
			manifestName = name
			continue
		}
		if tree == "" && !(name == "opt" && e.Type == tarsafe.Dir) {
			tree = "."
			if name == staticRoot || strings.HasPrefix(name, staticRoot+"/") {
				tree = staticRoot
			}
		}
		rel := name
		if tree == staticRoot || tree == "" {
			if name == "opt" && e.Type == tarsafe.Dir {
				continue
			}
			var ok bool
			if rel, ok = strings.CutPrefix(name, staticRoot+"/"); !ok {
				if name != staticRoot {
					c.log.Warn("skipping archive entry outside opt/kata", "entry", name)
					continue
				}
				rel = "."
			}
		}
		if rel == recordName {
			continue
		}
		e.Mode = installMode(e.Mode)
		if rel == "." {
			if e.Type != tarsafe.Dir {
				return nil, &EntryError{Entry: e.Raw, Err: ErrUnsafeDotDot}
			}
			root.mode = e.Mode
			if stage != nil {
				if err := stage.Chmod(".", e.Mode); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := mkdirs(path.Dir(rel)); err != nil {
			return nil, err
		}
		n := &node{path: rel, mode: e.Mode}
		switch e.Type {
		case tarsafe.Dir:
			n.typ = TypeDir
			if old, ok := byPath[rel]; ok {
				// Implied earlier by a file below it; now we know its mode.
				old.mode = e.Mode
				if stage != nil {
					if err := stage.Chmod(rel, e.Mode); err != nil {
						return nil, err
					}
				}
				continue
			}
			space.claimDir()
			if err := space.check(true); err != nil {
				return nil, err
			}
			if stage != nil {
				if err := stage.Mkdir(rel, e.Mode); err != nil {
					return nil, err
				}
			}
		case tarsafe.File:
			n.typ, n.size = TypeFile, e.Size
			// Refused on its header: a bomb's content is never written.
			space.claimFile(e.Size)
			if err := space.check(true); err != nil {
				return nil, err
			}
			var in io.Reader = tr
			var capture *captureWriter
			if isShimConfig(rel) && e.Size <= maxConfig {
				capture = &captureWriter{}
				in = io.TeeReader(tr, capture)
			}
			if err := copyFile(stage, n, in, buf, c.perFileSync, c.noKick); err != nil {
				return nil, fmt.Errorf("archive entry %s: %w", e.Raw, err)
			}
			if capture != nil {
				res.configs[rel] = capture.data
			}
			if stage != nil {
				c.step("copied")
			}
		case tarsafe.Symlink:
			// Checked against the tree, not the archive root: a link may
			// not climb out of opt/kata either.
			if err := tarsafe.CheckSymlink(rel, e.Target); err != nil {
				return nil, &EntryError{Entry: e.Raw, Err: err}
			}
			n.typ, n.target, n.mode = TypeSymlink, e.Target, 0o777
			space.claimSymlink(e.Target)
			if err := space.check(true); err != nil {
				return nil, err
			}
			if stage != nil {
				if err := stage.Symlink(e.Target, rel); err != nil {
					return nil, err
				}
			}
		case tarsafe.Hardlink:
			target := e.Target
			if tree == staticRoot {
				var ok bool
				if target, ok = strings.CutPrefix(target, staticRoot+"/"); !ok {
					return nil, &EntryError{Entry: e.Raw, Err: ErrUnsafeLink}
				}
			}
			to := byPath[target]
			if to == nil || to.typ != TypeFile {
				return nil, &EntryError{Entry: e.Raw, Err: ErrUnsafeLink}
			}
			n.typ, n.size, n.mode, n.digest = TypeFile, to.size, to.mode, to.digest
			if stage != nil {
				if err := stage.Link(target, stage, rel); err != nil {
					return nil, err
				}
			}
		}
		if prev, ok := byPath[rel]; ok && prev.typ != TypeDir {
			return nil, &EntryError{Entry: e.Raw, Err: ErrUnsafeDuplicate}
		}
		byPath[rel] = n
		res.nodes = append(res.nodes, n)
	}
	if tree == "" {
		return nil, ErrUnknownLayout
	}
	if manifest != nil {
		if res.manifest, err = parseManifest(manifestName, manifest, tree); err != nil {
			return nil, err
		}
	}
	// Hard links share their inode: record the identity of each once the
	// archive is done, since later links change the ctime.
	if stage != nil {
		for _, n := range res.nodes {
			if n.typ == TypeDir {
				continue
			}
			if err := statNode(stage, n); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

func isShimConfig(rel string) bool {
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	return isConfigDir(dir) && shimConfig.MatchString(base)
}

type captureWriter struct{ data []byte }

func (w *captureWriter) Write(p []byte) (int, error) {
	w.data = append(w.data, p...)
	return len(p), nil
}
