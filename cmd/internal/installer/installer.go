// Package installer is the kata-installer command's logic: it composes the
// public packages into install, uninstall, plan and status on one node,
// with the failure handling a node needs (a restart or verification that
// fails puts the runtime config back). The cleanup after an uninstall is
// package cleanup's.
package installer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"syscall"
	"time"

	"github.com/kata-deploy/kata-deploy/artifacts"
	"github.com/kata-deploy/kata-deploy/cmd/internal/hostnode"
	"github.com/kata-deploy/kata-deploy/containerd"
	"github.com/kata-deploy/kata-deploy/crio"
	"github.com/kata-deploy/kata-deploy/internal/cri"
	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/internal/journal"
	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/runtime"
	"github.com/kata-deploy/kata-deploy/systemd"
)

// LockDir is the host directory concurrent installers on one node serialise
// on (an flock on the directory itself). It is the node's state directory,
// which every installer already needs writable: /run is read-only or not
// mounted at all in the installer's pod, and a lock file in the state
// directory would outlive the uninstall that empties it.
const LockDir = journal.Dir

// Config is what one node's install needs.
type Config struct {
	HostRoot string
	Runtime  string // a runtime.Variant name, or "auto"
	// RuntimeVersion, when set, is the runtime's version ("1.6.20"),
	// instead of asking the Node or the runtime.
	RuntimeVersion string
	// RuntimeConfig, when set, is the host path of containerd's main config
	// (or k0s's drop-in directory), or of CRI-O's drop-in directory, for a
	// runtime started with a config of its own.
	RuntimeConfig string
	Payload       string
	Mode          runtime.Mode
	Shims         []string
	DefaultShim   string
	Prefix        string // Kata goes to <Prefix>/kata[-<Suffix>]
	Suffix        string
	// Snapshotters gives shims a containerd snapshotter of their own
	// (shim -> snapshotter, e.g. "fc" -> "devmapper").
	Snapshotters map[string]string
	Restart      bool // restart the runtime through systemd
	// SystemdSocket is the host path of systemd's private socket (under
	// HostRoot; systemd.DefaultSocket when empty).
	SystemdSocket string
	VerifyTimeout time.Duration
	// Settings are Kata's own settings, written as drop-ins in each
	// shim's config.d only when set.
	Settings artifacts.Settings

	// Node is nil when the install must not touch the API server.
	Node *nodelabel.Client
	Log  *slog.Logger

	// recordedVersion is the runtime version the adopted install record
	// holds: what uninstall works from, whatever the Node or the runtime
	// say at the time (restarting, stopped or unreachable).
	recordedVersion string
	// stateDirsMade are the directories the lock had to make for the
	// state directory: a new record remembers them, so that the uninstall
	// that empties the state directory removes them too.
	stateDirsMade []string

	// dialSystemd and dialCRI connect to systemd's private socket and to
	// the runtime's CRI socket (both paths on this machine, resolved under
	// HostRoot). Nil dials the real ones; the package's tests set fakes.
	dialSystemd func(ctx context.Context, socket string) (systemdClient, error)
	dialCRI     func(socket string) (criClient, error)
}

// systemdClient is what the installer needs of the host's systemd.
type systemdClient interface {
	RestartIfNeeded(ctx context.Context, unit string, configWritten time.Time) (systemd.UnitStatus, systemd.Decision, error)
	Restart(ctx context.Context, unit string) (systemd.UnitStatus, error)
	Exists(ctx context.Context, unit string) (bool, error)
	Close() error
}

// criClient is what the installer needs of the runtime's CRI socket.
type criClient interface {
	Version(ctx context.Context) (string, error)
	Handlers(ctx context.Context) ([]string, error)
	Close() error
}

var (
	_ systemdClient = (*systemd.Client)(nil)
	_ criClient     = (*cri.Client)(nil)
)

// engine is what the installer needs of a config engine.
type engine interface {
	runtime.ConfigEngine
	ConfigWritten() (time.Time, error)
	JournalPath() string
}

var (
	_ engine = (*containerd.Engine)(nil)
	_ engine = (*crio.Engine)(nil)
)

// target is the node's runtime as detected.
type target struct {
	root    *hostfs.Root // the host root the operation opened once
	variant runtime.Variant
	version runtime.Version
	engine  engine
	spec    runtime.Spec
}

func (c *Config) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c.Log
}

// detect works out the node's runtime: its kind and version from the Node
// object (or, without an API server, from the runtime's own CRI socket),
// how it is packaged from the host's files, unless the config names it.
func (c *Config) detect(ctx context.Context, root *hostfs.Root) (*target, error) {
	// An adopted install record knows the runtime it configured: the Node,
	// which may say "Unknown" while the runtime restarts or not answer at
	// all, is not asked.
	node := c.Node
	if c.recordedVersion != "" {
		node = nil
	}
	// The Node's runtime version is parsed once, by hostnode.Variant.
	variant, rt, err := hostnode.Variant(ctx, root, node, c.Runtime, c.log())
	if err != nil {
		return nil, err
	}
	known := func(version string) error {
		v, err := runtime.ParseVersion(version)
		rt = runtime.Runtime{Kind: variant.Kind(), Version: v}
		return err
	}
	switch {
	case c.RuntimeVersion != "":
		if err := known(c.RuntimeVersion); err != nil {
			return nil, err
		}
	case c.recordedVersion != "":
		if err := known(c.recordedVersion); err != nil {
			return nil, fmt.Errorf("the install record's runtime version: %w", err)
		}
	case rt.Version == runtime.Version{}:
		reported, err := c.askRuntime(ctx, root, variant)
		if err != nil {
			return nil, fmt.Errorf("cannot tell the %s version (the Node does not report it, and the runtime does not answer): set the runtime version explicitly: %w", variant.Kind(), err)
		}
		if rt, err = runtime.ParseRuntime(reported); err != nil {
			return nil, err
		}
	}
	hopts := []runtime.HandlerOption{runtime.WithDefaultShim(c.DefaultShim)}
	for shim, sn := range c.Snapshotters {
		if sn == "" {
			return nil, fmt.Errorf("snapshotter for shim %s is empty: want <shim>=<snapshotter>, e.g. fc=devmapper", shim)
		}
		if !slices.Contains(c.Shims, shim) {
			return nil, fmt.Errorf("snapshotter %s=%s: shim %q is not among the selected shims %v", shim, sn, shim, c.Shims)
		}
		hopts = append(hopts, runtime.WithSnapshotter(shim, sn))
	}
	handlers, err := c.installation().Handlers(c.Shims, hopts...)
	if err != nil {
		return nil, err
	}
	t := &target{root: root, variant: variant, version: rt.Version, spec: runtime.Spec{Handlers: handlers, Mode: c.Mode}}
	name := c.installation().EngineName()
	switch variant.Kind() {
	case runtime.CRIO:
		if len(c.Snapshotters) > 0 {
			return nil, errors.New("a per-shim snapshotter is a containerd setting; CRI-O stores images in containers/storage for every runtime: drop the snapshotter setting")
		}
		opts := []crio.Option{crio.WithName(name), crio.WithLogger(c.log())}
		if c.RuntimeConfig != "" {
			opts = append(opts, crio.WithConfigDir(c.RuntimeConfig))
		}
		t.engine, err = crio.New(c.HostRoot, rt.Version, opts...)
	default:
		opts := []containerd.Option{containerd.WithName(name), containerd.WithLogger(c.log())}
		if c.RuntimeConfig != "" {
			opts = append(opts, containerd.WithConfigPath(c.RuntimeConfig))
		}
		t.engine, err = containerd.New(c.HostRoot, variant, rt.Version, opts...)
	}
	if err != nil {
		return nil, err
	}
	c.log().Info("detected container runtime", "variant", variant, "version", rt.Version.String())
	return t, nil
}

// openCRI opens the variant's CRI socket under the host root.
func (c *Config) openCRI(root *hostfs.Root, v runtime.Variant) (criClient, error) {
	socket, err := cri.SocketUnder(root, v.CRISocket())
	if err != nil {
		return nil, err
	}
	if c.dialCRI != nil {
		return c.dialCRI(socket)
	}
	client, err := cri.Dial(socket)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return client, nil
}

// askRuntime asks the runtime's CRI socket for its version, waiting up to
// VerifyTimeout (at least askTimeout) for a runtime that is restarting.
func (c *Config) askRuntime(ctx context.Context, root *hostfs.Root, v runtime.Variant) (string, error) {
	client, err := c.openCRI(root, v)
	if err != nil {
		return "", err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, max(c.VerifyTimeout, askTimeout))
	defer cancel()
	for {
		version, err := client.Version(ctx)
		if err == nil {
			return version, nil
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// askTimeout is the least time askRuntime gives a runtime to answer.
const askTimeout = 10 * time.Second

func (c *Config) artifactOptions() []artifacts.Option {
	return []artifacts.Option{artifacts.WithInstallation(c.installation()), artifacts.WithLogger(c.log()), artifacts.WithSettings(c.Settings)}
}

// lock serialises installers on the node. A state directory this call had
// to make is removed again on unlock if nothing was put in it, so that a
// run that changed nothing leaves nothing behind; if the run keeps state
// there, its install record remembers the directories instead.
func (c *Config) lock(ctx context.Context, root *hostfs.Root) (func(), error) {
	c.log().Info("waiting for the node's installer lock", "path", LockDir)
	for {
		made, err := root.MkdirAll(LockDir, 0o700)
		if err != nil {
			return nil, fmt.Errorf("installer lock: %w (the state directory %s must be writable: mount it from the host)", err, LockDir)
		}
		d, err := root.OpenDir(LockDir)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed by an uninstall since MkdirAll
		}
		if err != nil {
			return nil, fmt.Errorf("installer lock: %w", err)
		}
		unlock, err := d.Lock(ctx)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("installer lock: %w", err)
		}
		// An uninstall removes the state directory once it is empty, while
		// holding the lock: a waiter then holds the lock of a directory
		// that is gone, and must take the new one's.
		if same, err := isSameDir(root, d); err != nil || !same {
			unlock()
			d.Close()
			if err != nil {
				return nil, fmt.Errorf("installer lock: %w", err)
			}
			continue
		}
		c.stateDirsMade = made
		return func() {
			if _, err := root.RemoveEmptyDirs(made); err != nil {
				c.log().Warn("cannot remove the empty state directory", "path", LockDir, "err", err)
			}
			unlock()
			d.Close()
		}, nil
	}
}

// isSameDir reports whether d is still the directory at LockDir.
func isSameDir(root *hostfs.Root, d *hostfs.Dir) (bool, error) {
	held, err := d.Lstat(".")
	if err != nil {
		return false, err
	}
	fi, err := root.Stat(LockDir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == uint64(held.Dev) && st.Ino == held.Ino, nil
}

// eventTimeout bounds recording an event: an event is worth a few
// seconds, never holding up the node's own work while the API server does
// not answer.
const eventTimeout = 10 * time.Second

func (c *Config) event(ctx context.Context, reason nodelabel.Reason, format string, args ...any) {
	if c.Node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	if err := c.Node.RecordEvent(ctx, reason, fmt.Sprintf(format, args...)); err != nil {
		c.log().Warn("cannot record event on the Node", "reason", reason, "err", err)
	}
}

func (c *Config) systemd(ctx context.Context, root *hostfs.Root) (systemdClient, error) {
	socket, err := c.systemdSocket(root)
	if err != nil {
		return nil, err
	}
	if c.dialSystemd != nil {
		return c.dialSystemd(ctx, socket)
	}
	sd, err := systemd.Dial(ctx, c.HostRoot, systemd.WithSocket(socket), systemd.WithLogger(c.log()))
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return sd, nil
}

// systemdSocket returns where systemd's socket is on this machine.
func (c *Config) systemdSocket(root *hostfs.Root) (string, error) {
	return hostnode.SystemdSocket(root, c.SystemdSocket)
}

// waitServing asks the runtime's CRI socket, every interval, until the
// runtime serves every handler of want (with none, until it answers) or
// VerifyTimeout passes (see cri.WaitServing).
func (c *Config) waitServing(ctx context.Context, t *target, want []string, every time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, c.VerifyTimeout)
	defer cancel()
	client, err := c.openCRI(t.root, t.variant)
	if err != nil {
		return err
	}
	defer client.Close()
	return cri.WaitServing(ctx, client, t.variant.CRISocket(), want, every)
}

// handlerNames lists the names the runtime must serve after install.
func (t *target) handlerNames() []string { return t.spec.HandlerNames() }

// verify waits, for VerifyTimeout from now (the runtime is active again),
// until the runtime itself serves every handler: the proof that the config
// works. What the Node shows is the kubelet's view of it, waited for before
// the node is labelled (settle), not a reason to undo the install.
func (c *Config) verify(ctx context.Context, t *target) error {
	want := t.handlerNames()
	if err := c.waitServing(ctx, t, want, 500*time.Millisecond); err != nil {
		return err
	}
	c.log().Info("the runtime serves the Kata handlers", "handlers", want)
	return nil
}
