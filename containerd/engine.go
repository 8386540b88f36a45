package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/internal/journal"
	"github.com/kata-deploy/kata-deploy/internal/tomltext"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// Engine registers Kata runtime handlers with containerd under a host root.
//
// How it edits depends on what the node's containerd does with imported
// files. containerd 2.1 and later merge an imported file's plugin tables
// key by key, so the handlers go into a drop-in file of their own, pulled
// in by a directory the config already imports or by one added entry in its
// imports list. Earlier releases let an imported plugin table replace the
// main file's one whole, which would silently drop the user's runc options,
// sandbox image and registry settings; there the handlers are appended, as
// one marked block, to the file that holds the CRI plugin's settings.
// Either way every byte of the user's file outside that one edit is kept,
// and uninstall restores the exact former bytes.
type Engine struct {
	root       *hostfs.Root
	variant    runtime.Variant
	version    runtime.Version
	configPath string
	name       string
	log        *slog.Logger

	// configPathSet says WithConfigPath was given, so that New refuses
	// an empty one instead of taking the variant's.
	configPathSet bool
}

var _ runtime.ConfigEngine = (*Engine)(nil)

// Option configures an Engine.
type Option func(*Engine)

// WithConfigPath sets the host path of containerd's main config file (or,
// for k0s, its drop-in directory) instead of the variant's usual one.
// An empty path is refused by New.
func WithConfigPath(p string) Option {
	return func(e *Engine) { e.configPath, e.configPathSet = p, true }
}

// WithName sets the name the engine's files, marks and journal carry, so
// that two independent installs can share a host ("kata-deploy" by
// default; runtime.Installation.EngineName names each install). Each
// install on a node needs a name of its own: PlanInstall
// refuses one whose handlers differ from those the name's journal
// records. New refuses a name that is not safe in a file name (1 to 64
// letters, digits, '.', '_' and '-').
func WithName(name string) Option { return func(e *Engine) { e.name = name } }

// WithLogger sets where the engine logs (nowhere by default; nil also
// means nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(e *Engine) {
		if l != nil {
			e.log = l
		}
	}
}

// New returns an engine for the host whose root directory is hostRoot,
// running containerd of the given variant and version (as the Node reports
// it; see runtime.ParseRuntime).
func New(hostRoot string, variant runtime.Variant, version runtime.Version, opts ...Option) (*Engine, error) {
	if err := checkRuntime(variant, version); err != nil {
		return nil, err
	}
	root, err := hostfs.New(hostRoot)
	if err != nil {
		return nil, fmt.Errorf("containerd engine: %w", err)
	}
	e := &Engine{root: root, variant: variant, version: version, name: "kata-deploy",
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(e)
	}
	if err := journal.CheckName(e.name); err != nil {
		return nil, fmt.Errorf("containerd engine: %w", err)
	}
	if !e.configPathSet {
		e.configPath = DefaultConfigPath(variant)
	} else if err := checkConfigPath(e.configPath); err != nil {
		return nil, err
	}
	e.configPath = path.Clean(e.configPath)
	return e, nil
}

// DefaultConfigPath returns where a variant keeps the containerd config
// that kata-deploy reads: the main config file, or for k0s the drop-in
// directory it loads by itself (runtime.Variant.ConfigPath, which this
// predates).
func DefaultConfigPath(v runtime.Variant) string { return v.ConfigPath() }

// ConfigPath returns the host path the engine reads containerd's config from.
func (e *Engine) ConfigPath() string { return e.configPath }

// mergesImports reports whether this containerd merges an imported plugin
// table into the main one (2.1 and later) rather than replacing it whole.
func (e *Engine) mergesImports() bool { return mergesImports(e.version) }

// JournalPath returns the host path of the journal where the engine keeps
// what it created and the former bytes of what it edited.
func (e *Engine) JournalPath() string { return journal.PathFor(e.journalName()) }

func (e *Engine) journalName() string {
	if e.name == "kata-deploy" {
		return "containerd"
	}
	return "containerd-" + e.name
}

func (e *Engine) dropInName() string { return e.name + ".toml" }

// ID names the engine in the plans it makes (runtime.Plan.Engine):
// "containerd/<name>".
func (e *Engine) ID() string { return "containerd/" + e.name }

// PlanInstall returns the changes that register spec's handlers.
func (e *Engine) PlanInstall(ctx context.Context, spec runtime.Spec) (*runtime.Plan, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("containerd: %w", err)
	}
	if spec.Mode == runtime.ModeUntrusted && !routesUntrusted(e.version) {
		return nil, fmt.Errorf("containerd %s no longer routes pods annotated io.kubernetes.cri.untrusted-workload to a separate runtime (removed in 2.0): use --mode=%s and runtimeClassName: %s",
			e.version, runtime.ModeRuntimeClass, spec.Handlers[0].Name)
	}
	for _, h := range spec.Handlers {
		// containerd 1.6 reads a runtime's snapshotter key without error
		// and ignores it: fc would then run on overlayfs and fail.
		if h.Snapshotter != "" && !readsRuntimeOptions(e.version) {
			return nil, fmt.Errorf("containerd %s has no per-runtime snapshotter (containerd 1.7 added it), so handler %s cannot use %s: upgrade containerd, or leave the snapshotter out", e.version, h.Name, h.Snapshotter)
		}
	}
	var f files
	j, err := journal.LoadRead(e.root, e.journalName(), &f.reads)
	if err != nil {
		return nil, err
	}
	if err := j.CheckInstall(spec.Handlers, "containerd.WithName"); err != nil {
		return nil, err
	}
	// The variant table says how each variant takes its config; a
	// strategy this engine does not know is refused, never guessed.
	switch s := e.variant.ConfigStrategy(); s {
	case runtime.StrategyDropInDir:
		err = e.checkDropInDir(ctx, &f, e.configPath, path.Join(e.configPath, e.dropInName()), spec)
		if err == nil {
			err = e.planDropIn(ctx, &f, e.configPath, e.dropInVersion(), spec, nil)
		}
	case runtime.StrategyTemplate:
		err = e.planInPlace(ctx, &f, e.configPath, spec)
	case runtime.StrategyRendered:
		err = e.planDistro(ctx, &f, spec)
	case runtime.StrategyMainFile:
		err = e.planContainerd(ctx, &f, spec, j)
	default:
		err = fmt.Errorf("containerd engine: variant %q: config strategy %q unknown to this engine", e.variant, s)
	}
	if err != nil {
		return nil, err
	}
	if err := e.planShimLinks(&f, spec, j); err != nil {
		return nil, err
	}
	// What is written, recorded and later removed is what the paths
	// resolve to on the host, never a symlink of the user's on the way.
	if err := journal.ResolvePaths(e.root, f.changes); err != nil {
		return nil, err
	}
	for i, t := range f.targets {
		if f.targets[i], err = e.root.Resolve(t); err != nil {
			return nil, err
		}
	}
	plan := &runtime.Plan{Kind: runtime.Install, Engine: e.ID(), Handlers: spec.HandlerNames(), Registered: spec.Handlers, Changes: f.changes}
	// A file or link an earlier install wrote that this one no longer
	// uses (say, containerd was upgraded and the strategy changed, or no
	// longer needs shim links) is undone.
	stale := &journal.Journal{Engine: j.Engine, Files: map[string]*journal.File{}, Links: map[string]string{}}
	for p, target := range j.Links {
		if !slices.Contains(f.links, p) {
			stale.Links[p] = target
		}
	}
	for p, jf := range j.Files {
		resolved, err := e.root.Resolve(p)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(f.targets, resolved) {
			stale.Files[p] = jf
		}
	}
	if !stale.Empty() {
		undo, err := journal.PlanUninstall(ctx, e.root, stale, e.takeOut)
		if err != nil {
			return nil, err
		}
		plan.Changes = append(plan.Changes, undo.Changes...)
		plan.Notes = append(plan.Notes, undo.Notes...)
		f.reads.Add(undo.Reads...)
	}
	plan.Reads = f.reads.List()
	return plan, nil
}

// PlanUninstall returns the changes that undo every install on the host.
func (e *Engine) PlanUninstall(ctx context.Context) (*runtime.Plan, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	j, err := journal.Load(e.root, e.journalName())
	if err != nil {
		return nil, err
	}
	plan, err := journal.PlanUninstall(ctx, e.root, j, e.takeOut)
	if err != nil {
		return nil, err
	}
	plan.Engine = e.ID()
	return plan, nil
}

// Apply carries out a plan made by this engine: one another engine made
// is a *runtime.ForeignPlanError, and nothing is written once ctx has
// ended.
func (e *Engine) Apply(ctx context.Context, p *runtime.Plan) error {
	if err := e.usable(); err != nil {
		return err
	}
	if err := journal.CheckPlan(p, e.ID()); err != nil {
		return err
	}
	for _, c := range p.Changes {
		if c.Target != "" {
			e.log.Info("containerd shim link", "op", c.Op.String(), "path", c.Path, "target", c.Target, "why", c.Why)
			continue
		}
		e.log.Info("containerd config", "op", c.Op.String(), "path", c.Path, "why", c.Why)
	}
	return journal.Apply(ctx, e.root, e.journalName(), p)
}

// files collects the changes an install plan makes and every file it
// writes or edits, and every shim link it wants, changed this time or not.
type files struct {
	changes []runtime.FileChange
	targets []string
	links   []string // resolved host paths
	// reads are the files and directories the plan was decided on.
	reads journal.Reads
}

func (f *files) add(target string, changes ...runtime.FileChange) {
	f.targets = append(f.targets, target)
	f.changes = append(f.changes, changes...)
}

// planContainerd plans for a stand-alone containerd.
func (e *Engine) planContainerd(ctx context.Context, f *files, spec runtime.Spec, j *journal.Journal) error {
	if jf := j.File(e.root, e.configPath); jf != nil && jf.Created {
		return e.planNewConfig(ctx, f, spec)
	}
	main, err := e.read(ctx, f, e.configPath)
	if err != nil {
		return err
	}
	if main == nil {
		return e.planNewConfig(ctx, f, spec)
	}
	if !e.mergesImports() {
		if err := e.checkEffective(ctx, f, main, "", spec); err != nil {
			return err
		}
		target, err := e.criOwner(ctx, f, main)
		if err != nil {
			return err
		}
		if target == main.path {
			return e.planInPlaceDoc(ctx, f, main, spec)
		}
		return e.planInPlace(ctx, f, target, spec)
	}
	if dir, err := e.importedDir(f, main); err != nil || dir != "" {
		if err != nil {
			return err
		}
		if err := e.checkEffective(ctx, f, main, path.Join(dir, e.dropInName()), spec); err != nil {
			return err
		}
		return e.planDropIn(ctx, f, dir, importedVersion(main), spec, nil)
	}
	dropIn := path.Join(path.Dir(e.configPath), e.dropInName())
	if err := e.checkEffective(ctx, f, main, dropIn, spec); err != nil {
		return err
	}
	if err := e.planDropIn(ctx, f, path.Dir(e.configPath), importedVersion(main), spec, nil); err != nil {
		return err
	}
	after, err := addImport(ctx, main, dropIn)
	if err != nil {
		return err
	}
	if bytes.Equal(after, main.data) {
		f.add(e.configPath)
		return nil
	}
	f.add(e.configPath, runtime.FileChange{Op: runtime.Modify, Path: e.configPath, Before: main.data, After: after, Inserted: []byte(dropIn), Why: "import " + dropIn})
	return nil
}

// planDistro plans for k3s and rke2, whose config.toml is rendered from a
// template at every start and so must never be edited: the handlers go into
// the drop-in directory that the rendered config imports.
func (e *Engine) planDistro(ctx context.Context, f *files, spec runtime.Spec) error {
	main, err := e.read(ctx, f, e.configPath)
	if err != nil {
		return err
	}
	if main == nil {
		return fmt.Errorf("%s: not found; %s must have started once and rendered its containerd config before Kata can be registered", e.configPath, e.variant)
	}
	dir, err := e.importedDir(f, main)
	if err != nil {
		return err
	}
	if dir != "" {
		if err := e.checkEffective(ctx, f, main, path.Join(dir, e.dropInName()), spec); err != nil {
			return err
		}
	}
	if dir == "" {
		d := path.Dir(e.configPath)
		sub := lookupVersion(main.version).distroDropIns
		return &runtime.ConfigError{Path: e.configPath, Key: "imports", Err: fmt.Errorf(
			"the rendered config imports no drop-in directory, and kata-deploy will not edit a file %s regenerates; "+
				"upgrade %s to a release whose containerd config imports %s/%s/*.toml, or add `imports = [\"%s/%s/*.toml\"]` to %s/%s.tmpl and restart %s",
			e.variant, e.variant, d, sub, d, sub, d, path.Base(e.configPath), e.variant.RuntimeUnit())}
	}
	if e.mergesImports() {
		return e.planDropIn(ctx, f, dir, importedVersion(main), spec, nil)
	}
	// This containerd lets an imported plugin table replace the rendered
	// one, so the drop-in restates the rendered tables it touches.
	return e.planDropIn(ctx, f, dir, main.version, spec, main)
}

// planNewConfig plans a config file for a host that has none, so that the
// result is what containerd would do by default plus the Kata handlers.
func (e *Engine) planNewConfig(ctx context.Context, f *files, spec runtime.Spec) error {
	version := e.dropInVersion()
	empty, err := parseDocument(ctx, e.configPath, nil, e.name)
	if err != nil {
		return err
	}
	empty.version = version
	entries, err := e.entries(empty, spec)
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# Written by " + e.name + " because the host had no containerd config; removed by uninstall.\n")
	fmt.Fprintf(&b, "version = %d\n\n", version)
	b.WriteString(renderTables(version, entries, "\n"))
	return e.planOwnedFile(ctx, f, e.configPath, []byte(b.String()), "no containerd config on the host")
}

// planDropIn plans the engine's own drop-in file in dir. With restate, the
// drop-in also carries restate's tables for every plugin it touches, for a
// containerd that replaces plugin tables from imports.
func (e *Engine) planDropIn(ctx context.Context, f *files, dir string, version int, spec runtime.Spec, restate *document) error {
	p := path.Join(dir, e.dropInName())
	base, err := parseDocument(ctx, p, nil, e.name)
	if err != nil {
		return err
	}
	base.version = version
	if restate != nil {
		base = restate
	}
	entries, err := e.entries(base, spec)
	if err != nil {
		return err
	}
	var content []byte
	if restate != nil {
		content, err = renderRestated(ctx, restate, entries, e.name)
	} else {
		content = []byte(dropInHeader(e.name) + fmt.Sprintf("version = %d\n\n", version) + renderTables(version, entries, "\n"))
	}
	if err != nil {
		return err
	}
	if _, err := parseDocument(ctx, p, content, e.name); err != nil {
		return fmt.Errorf("internal error: rendered drop-in does not parse: %w", err)
	}
	return e.planOwnedFile(ctx, f, p, content, "Kata runtime handlers")
}

// planOwnedFile plans a file the engine owns whole to hold content,
// creating its directory if needed.
func (e *Engine) planOwnedFile(ctx context.Context, f *files, p string, content []byte, why string) error {
	current, err := f.reads.ReadFile(e.root, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		dirs, err := journal.PlanDirs(e.root, path.Dir(p))
		if err != nil {
			return err
		}
		f.add(p, append(dirs, runtime.FileChange{Op: runtime.Create, Path: p, After: content, Perm: 0o644, Why: why})...)
	case err != nil:
		return err
	case bytes.Equal(current, content):
		f.add(p)
	default:
		f.add(p, runtime.FileChange{Op: runtime.Modify, Path: p, Before: current, After: content, Why: why})
	}
	return nil
}

// planInPlace appends the handlers, as one marked block, to the file that
// containerd reads them from.
func (e *Engine) planInPlace(ctx context.Context, f *files, p string, spec runtime.Spec) error {
	doc, err := e.read(ctx, f, p)
	if err != nil {
		return err
	}
	if doc == nil {
		return fmt.Errorf("%s: not found", p)
	}
	if err := e.checkEffective(ctx, f, doc, "", spec); err != nil {
		return err
	}
	return e.planInPlaceDoc(ctx, f, doc, spec)
}

func (e *Engine) planInPlaceDoc(ctx context.Context, f *files, doc *document, spec runtime.Spec) error {
	p := doc.path
	base := doc
	if doc.block != nil {
		var err error
		if base, err = parseDocument(ctx, p, removeBlock(doc), e.name); err != nil {
			return err
		}
	}
	entries, err := e.entries(base, spec)
	if err != nil {
		return err
	}
	block := renderTables(base.version, entries, base.eol)
	after, err := appendBlock(ctx, base, block, e.name)
	if err != nil {
		return err
	}
	if bytes.Equal(after, doc.data) {
		f.add(p)
		return nil
	}
	begin, _ := blockMarkers(e.name)
	inserted := after[bytes.LastIndex(after, []byte(begin)):]
	f.add(p, runtime.FileChange{Op: runtime.Modify, Path: p, Before: doc.data, After: after, Inserted: inserted, Why: "append Kata runtime handlers"})
	return nil
}

// entries returns the runtime tables to write into a file whose other
// settings are base's, refusing to overwrite a runtime someone else defined.
func (e *Engine) entries(base *document, spec runtime.Spec) ([]entry, error) {
	// containerd 2.x takes the snapshotter images are unpacked into from
	// the image service's runtime platforms, a table a version 2 file
	// cannot hold; the real 2.2 does not derive it from the runtime's own
	// key when it migrates a version 2 config, so fc's images would land in
	// the default snapshotter.
	for _, h := range spec.Handlers {
		if h.Snapshotter != "" && platformSnapshotter(e.version) && imagesPlugin(base.version) == "" {
			return nil, &runtime.ConfigError{Path: e.configPath, Key: "version",
				Err: fmt.Errorf("is %d: containerd %s reads handler %s's snapshotter %s only from a version 3 config (its image service's runtime_platforms); migrate the config (containerd config migrate), or leave the snapshotter out", base.version, e.version, h.Name, h.Snapshotter)}
		}
	}
	var out []entry
	keys := runtimesKeys(base.version)
	for i := range keys {
		if line, ok := base.inline[tomltext.DottedKey(keys[:i+1]...)]; ok {
			return nil, &runtime.ConfigError{Path: base.path, Line: line, Key: tomltext.DottedKey(keys[:i+1]...),
				Err: errors.New("is an inline table, which TOML does not allow extending; write it as [table] sections so that runtimes can be added")}
		}
	}
	existing, _ := base.lookup(keys...)
	runtimes, _ := existing.(map[string]any)
	if replacesDefaultRuntimes(e.version) && len(runtimes) == 0 {
		// containerd 1.x replaces its default runtimes as soon as a file
		// names any runtime: restate runc, or ordinary pods would break.
		def, _ := base.lookup("plugins", criPlugin(base.version), "containerd", "default_runtime_name")
		if def == nil || def == "runc" {
			out = append(out, entry{name: "runc", runcDefault: true})
		}
	}
	for _, h := range spec.Handlers {
		out = append(out, entry{name: h.Name, handler: h})
	}
	if spec.Mode == runtime.ModeUntrusted {
		if v, ok := base.lookup("plugins", criPlugin(base.version), "containerd", "untrusted_workload_runtime", "runtime_type"); ok && v != "" {
			k := []string{"plugins", criPlugin(base.version), "containerd", "untrusted_workload_runtime"}
			return nil, &runtime.ConfigError{Path: base.path, Line: tomltext.KeyLine(base.data, k...), Key: tomltext.DottedKey(k...),
				Err: errors.New("already names an untrusted workload runtime; remove it to let Kata serve untrusted workloads")}
		}
		u := spec.Handlers[0]
		u.Name = untrustedRuntime
		out = append(out, entry{name: untrustedRuntime, handler: u})
	}
	for _, en := range out {
		if _, taken := runtimes[en.name]; taken {
			// base may be the file without the engine's block; that block
			// is appended last, so lines before it are the file's.
			return nil, &runtime.ConfigError{Path: base.path, Line: tomltext.KeyLine(base.data, append(keys, en.name)...), Key: tomltext.DottedKey(append(keys, en.name)...),
				Err: errors.New("is already defined; kata-deploy will not overwrite a runtime it did not write (remove it, or install with another name suffix)")}
		}
	}
	return out, nil
}

// dropInVersion is the config version for a file the engine writes with no
// main config to match (see writeVersion).
func (e *Engine) dropInVersion() int { return writeVersion(e.version) }

// importedVersion is the config version for a drop-in that main imports:
// main's own. containerd 2.2 merges the files before migrating them, and a
// newer version from a drop-in would skip the migration of main's older
// tables, silently dropping the user's settings (seen with 2.2.9: a v3
// drop-in under a v2 config lost its sandbox image and registry mirrors).
func importedVersion(main *document) int { return main.version }

// importedDir returns the directory of a glob import in main that would
// load the engine's drop-in, or "". containerd stops reading imports, with
// no error, at the first listed file that does not exist, so a drop-in
// directory behind such a stale entry is refused rather than used.
func (e *Engine) importedDir(f *files, main *document) (string, error) {
	if main.imports == nil {
		return "", nil
	}
	var missing string
	for _, im := range main.imports.elems {
		p := im.value
		if !path.IsAbs(p) {
			p = path.Join(path.Dir(main.path), p)
		}
		dir, pattern := path.Split(path.Clean(p))
		if !hasMeta(pattern) {
			if ok, err := f.reads.Exists(e.root, p); err != nil {
				return "", err
			} else if !ok && missing == "" {
				missing = im.value
			}
			continue
		}
		if hasMeta(dir) {
			continue
		}
		if ok, _ := path.Match(pattern, e.dropInName()); !ok {
			continue
		}
		if missing != "" {
			return "", &runtime.ConfigError{Path: main.path, Line: main.imports.line, Key: "imports", Err: fmt.Errorf(
				"%q does not exist, and containerd stops reading imports at the first missing file, so it would never load %s; remove the stale entry",
				missing, path.Join(dir, e.dropInName()))}
		}
		return path.Clean(dir), nil
	}
	return "", nil
}

// criOwner returns the file whose CRI plugin table containerd ends up
// with when imports replace plugin tables whole: the last direct import
// that defines it, else the main file.
func (e *Engine) criOwner(ctx context.Context, f *files, main *document) (string, error) {
	owner := main.path
	if main.imports == nil {
		return owner, nil
	}
	plugin := criPlugin(main.version)
	for _, im := range main.imports.elems {
		p := im.value
		if !path.IsAbs(p) {
			p = path.Join(path.Dir(main.path), p)
		}
		files := []string{path.Clean(p)}
		if dir, pattern := path.Split(path.Clean(p)); hasMeta(pattern) {
			entries, err := f.reads.ReadDir(e.root, dir)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return "", err
			}
			files = files[:0]
			for _, en := range entries {
				if ok, _ := path.Match(pattern, en.Name()); ok {
					files = append(files, path.Join(dir, en.Name()))
				}
			}
		}
		for _, p := range files {
			doc, err := e.read(ctx, f, p)
			if err != nil {
				return "", err
			}
			if doc == nil {
				continue
			}
			if _, ok := doc.lookup("plugins", plugin); ok || doc.block != nil {
				owner = p
			}
		}
	}
	return owner, nil
}

// read parses a config file, or returns nil if it does not exist, and
// records it among the plan's reads.
func (e *Engine) read(ctx context.Context, f *files, p string) (*document, error) {
	data, err := f.reads.ReadFile(e.root, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	doc, err := parseDocument(ctx, p, data, e.name)
	if err != nil {
		return nil, err
	}
	if err := e.checkVersion(doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// checkVersion refuses a config this containerd could not read, rather
// than registering handlers it would never load.
func (e *Engine) checkVersion(doc *document) error {
	newest := newestReadable(e.version)
	if doc.version > newest {
		return &runtime.ConfigError{Path: doc.path, Line: doc.lineOfKey("version"), Key: "version",
			Err: fmt.Errorf("config version %d, but containerd %s reads config versions 1 to %d", doc.version, e.version, newest)}
	}
	return nil
}

func hasMeta(s string) bool { return strings.ContainsAny(s, "*?[") }

func dropInHeader(name string) string {
	return "# Written by " + name + ": Kata Containers runtime handlers. Removed by uninstall; do not edit.\n"
}

// ConfigWritten returns when the engine last changed containerd's
// configuration on this host (zero if it has nothing installed), for a
// caller that restarts containerd only if it has not been restarted since.
func (e *Engine) ConfigWritten() (time.Time, error) {
	if err := e.usable(); err != nil {
		return time.Time{}, err
	}
	return journal.LastWrite(e.root, e.journalName())
}
