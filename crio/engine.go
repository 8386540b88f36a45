package crio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/internal/journal"
	"github.com/kata-deploy/kata-deploy/internal/tomltext"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// Default host paths of CRI-O's configuration, kept for importers: the
// engine takes them from runtime.VariantCRIO, where each variant's paths
// are kept, and a test holds these equal to them.
const (
	// DefaultConfigFile is CRI-O's main config file.
	//
	// Deprecated: use runtime.VariantCRIO.ConfigPath().
	DefaultConfigFile = "/etc/crio/crio.conf"
	// DefaultConfigDir is CRI-O's drop-in directory.
	//
	// Deprecated: use runtime.VariantCRIO.DropInDir().
	DefaultConfigDir = "/etc/crio/crio.conf.d"
)

// runtimeRoot is where CRI-O keeps state for VM runtimes, as Kata expects.
const runtimeRoot = "/run/vc"

// Engine registers Kata runtime handlers with CRI-O under a host root.
type Engine struct {
	root       *hostfs.Root
	version    runtime.Version
	configFile string
	configDir  string
	name       string
	log        *slog.Logger
}

var _ runtime.ConfigEngine = (*Engine)(nil)

// Option configures an Engine.
type Option func(*Engine)

// WithConfigDir sets CRI-O's drop-in directory
// (runtime.VariantCRIO.DropInDir() if not set). An empty one is refused
// by New.
func WithConfigDir(dir string) Option { return func(e *Engine) { e.configDir = dir } }

// WithConfigFile sets CRI-O's main config file
// (runtime.VariantCRIO.ConfigPath() if not set). An empty one is refused
// by New.
func WithConfigFile(p string) Option { return func(e *Engine) { e.configFile = p } }

// WithName sets the name the engine's drop-in and journal carry, so that
// two independent installs can share a host ("kata-deploy" by default;
// runtime.Installation.EngineName names each install). Each install on a
// node needs a name of its own: PlanInstall refuses one
// whose handlers differ from those the name's journal records. New
// refuses a name that is not safe in a file name (1 to 64 letters, digits,
// '.', '_' and '-').
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
// running CRI-O of the given version.
func New(hostRoot string, version runtime.Version, opts ...Option) (*Engine, error) {
	if err := checkVersion(version); err != nil {
		return nil, err
	}
	root, err := hostfs.New(hostRoot)
	if err != nil {
		return nil, fmt.Errorf("crio engine: %w", err)
	}
	e := &Engine{root: root, version: version, configFile: runtime.VariantCRIO.ConfigPath(), configDir: runtime.VariantCRIO.DropInDir(),
		name: "kata-deploy", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(e)
	}
	if err := journal.CheckName(e.name); err != nil {
		return nil, fmt.Errorf("crio engine: %w", err)
	}
	if err := checkPaths(e.configDir, e.configFile); err != nil {
		return nil, err
	}
	e.configDir, e.configFile = path.Clean(e.configDir), path.Clean(e.configFile)
	return e, nil
}

// DropInPath returns the host path of the engine's drop-in file. The "99-"
// prefix makes CRI-O read it after the distribution's own drop-ins.
func (e *Engine) DropInPath() string { return path.Join(e.configDir, "99-"+e.name+".conf") }

// JournalPath returns the host path of the journal where the engine keeps
// what it created and the former bytes of what it edited.
func (e *Engine) JournalPath() string { return journal.PathFor(e.journalName()) }

// ID names the engine in the plans it makes (runtime.Plan.Engine):
// "crio/<name>".
func (e *Engine) ID() string { return "crio/" + e.name }

func (e *Engine) journalName() string {
	if e.name == "kata-deploy" {
		return "crio"
	}
	return "crio-" + e.name
}

// PlanInstall returns the changes that register spec's handlers.
func (e *Engine) PlanInstall(ctx context.Context, spec runtime.Spec) (*runtime.Plan, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("crio: %w", err)
	}
	if spec.Mode == runtime.ModeUntrusted {
		return nil, fmt.Errorf("CRI-O %s has no untrusted workload runtime (runtime_untrusted_workload and the io.kubernetes.cri-o.TrustedSandbox annotation were removed in CRI-O 1.14): use --mode=%s and runtimeClassName: %s",
			e.version, runtime.ModeRuntimeClass, spec.Handlers[0].Name)
	}
	var reads journal.Reads
	j, err := journal.LoadRead(e.root, e.journalName(), &reads)
	if err != nil {
		return nil, err
	}
	if err := j.CheckInstall(spec.Handlers, "crio.WithName"); err != nil {
		return nil, err
	}
	if err := e.checkConflicts(ctx, &reads, spec); err != nil {
		return nil, err
	}
	content := render(e.name, spec.Handlers)
	// A symlinked drop-in directory (or file) is written through: what is
	// created, recorded and later removed is what the link points to.
	p, err := e.root.Resolve(e.DropInPath())
	if err != nil {
		return nil, err
	}
	plan := &runtime.Plan{Kind: runtime.Install, Engine: e.ID(), Handlers: spec.HandlerNames(), Registered: spec.Handlers}
	current, err := reads.ReadFile(e.root, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		dirs, err := journal.PlanDirs(e.root, e.configDir)
		if err != nil {
			return nil, err
		}
		plan.Changes = append(dirs, runtime.FileChange{Op: runtime.Create, Path: p, After: content, Perm: 0o644, Why: "Kata runtime handlers"})
	case err != nil:
		return nil, err
	case !bytes.Equal(current, content):
		plan.Changes = []runtime.FileChange{{Op: runtime.Modify, Path: p, Before: current, After: content, Why: "Kata runtime handlers"}}
	}
	plan.Reads = reads.List()
	return plan, nil
}

// PlanUninstall returns the changes that remove the engine's drop-in.
func (e *Engine) PlanUninstall(ctx context.Context) (*runtime.Plan, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	j, err := journal.Load(e.root, e.journalName())
	if err != nil {
		return nil, err
	}
	plan, err := journal.PlanUninstall(ctx, e.root, j, func(context.Context, string, []byte, *journal.File) (*journal.Surgery, error) {
		return nil, fmt.Errorf("crio engine edits no file it did not create")
	})
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
		e.log.Info("crio config", "op", c.Op.String(), "path", c.Path, "why", c.Why)
	}
	return journal.Apply(ctx, e.root, e.journalName(), p)
}

// checkConflicts refuses to shadow a runtime handler of the same name that
// someone else defined in crio.conf or another drop-in: the drop-in would
// silently win (or, sorting after it, silently lose). CRI-O reads every
// file under its drop-in directory, in subdirectories too and whatever its
// name ends in, so every one is read here; each is recorded among the
// plan's reads, and so is every directory listed.
func (e *Engine) checkConflicts(ctx context.Context, reads *journal.Reads, spec runtime.Spec) error {
	own, err := e.root.Resolve(e.DropInPath())
	if err != nil {
		return err
	}
	files := []string{e.configFile}
	dirs := []string{e.configDir}
	for len(dirs) > 0 {
		dir := dirs[0]
		dirs = dirs[1:]
		entries, err := reads.ReadDir(e.root, dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, en := range entries {
			p := path.Join(dir, en.Name())
			if en.IsDir() {
				dirs = append(dirs, p)
				continue
			}
			if resolved, err := e.root.Resolve(p); err == nil && resolved == own {
				continue
			}
			files = append(files, p)
		}
	}
	for _, p := range files {
		data, err := reads.ReadFile(e.root, p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		tree, err := tomltext.Decode(ctx, data)
		if err != nil {
			return tomltext.ConfigError(p, err)
		}
		v, _ := tomltext.Lookup(tree, "crio", "runtime", "runtimes")
		runtimes, _ := v.(map[string]any)
		for _, h := range spec.Handlers {
			if _, ok := runtimes[h.Name]; ok {
				return &runtime.ConfigError{Path: p, Line: tomltext.KeyLine(data, "crio", "runtime", "runtimes", h.Name), Key: tomltext.DottedKey("crio", "runtime", "runtimes", h.Name),
					Err: errors.New("is already defined; kata-deploy will not shadow a runtime handler it did not write (remove it, or install with another name suffix)")}
			}
		}
	}
	return nil
}

// render writes the drop-in: one table per handler.
func render(name string, handlers []runtime.Handler) []byte {
	var b strings.Builder
	b.WriteString("# Written by " + name + ": Kata Containers runtime handlers. Removed by uninstall; do not edit.\n")
	for _, h := range handlers {
		fmt.Fprintf(&b, "\n[crio.runtime.runtimes.%s]\n", tomltext.Key(h.Name))
		fmt.Fprintf(&b, "runtime_path = %s\n", tomltext.String(h.ShimPath))
		b.WriteString("runtime_type = \"vm\"\n")
		fmt.Fprintf(&b, "runtime_root = %s\n", tomltext.String(runtimeRoot))
		fmt.Fprintf(&b, "runtime_config_path = %s\n", tomltext.String(h.ConfigPath))
		fmt.Fprintf(&b, "privileged_without_host_devices = %t\n", h.PrivilegedWithoutHostDevices)
	}
	return []byte(b.String())
}

// ConfigWritten returns when the engine last changed CRI-O's configuration
// on this host (zero if it has nothing installed), for a caller that
// restarts CRI-O only if it has not been restarted since.
func (e *Engine) ConfigWritten() (time.Time, error) {
	if err := e.usable(); err != nil {
		return time.Time{}, err
	}
	return journal.LastWrite(e.root, e.journalName())
}
