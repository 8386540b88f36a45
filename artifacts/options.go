package artifacts

import (
	"io"
	"log/slog"
	"os"
	"slices"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// DefaultPrefix is where Kata is installed unless WithPrefix says
// otherwise: runtime.DefaultPrefix.
const DefaultPrefix = runtime.DefaultPrefix

// Default limits for tarball payloads.
const (
	DefaultMaxSize    int64 = 16 << 30
	DefaultMaxEntries       = 1 << 20
)

// Option adjusts Install, Plan, Uninstall and Status.
type Option func(*config)

type config struct {
	inst       runtime.Installation
	handlers   []runtime.Handler // the payload must run these (WithHandlers)
	log        *slog.Logger
	maxSize    int64
	maxEntries int
	settings   Settings
	// uid and gid own every installed entry: the installer's own, root
	// (0:0) on a node; a run that is not root cannot give files away.
	uid, gid int

	// Unexported knobs for tests and benchmarks.
	hook        func(step string) // called at each step boundary
	perFileSync bool              // fsync every file instead of one syncfs
	noExchange  bool              // act as if RENAME_EXCHANGE were unsupported
	noKick      bool              // no early writeback: all of it at the final syncfs
	workers     int
}

// Settings are Kata's own settings, written as drop-ins in each shim's
// config.d only when set. The zero value sets nothing.
type Settings struct {
	// Debug turns on debug logs for the runtime, agent and hypervisor, and
	// the agent's debug console.
	Debug bool
	// Annotations are, per shim, extra hypervisor annotations allowed
	// (enable_annotations), added to those the configuration allows.
	Annotations map[string][]string
	// AgentHTTPSProxy is agent.https_proxy on the guest kernel command line.
	AgentHTTPSProxy string
	// AgentNoProxy is agent.no_proxy on the guest kernel command line.
	AgentNoProxy string
	// KernelParams are extra guest kernel parameters.
	KernelParams []string
}

// clone copies s so that a caller changing its maps or slices later does
// not change an Option already made from it.
func (s Settings) clone() Settings {
	s.KernelParams = slices.Clone(s.KernelParams)
	if s.Annotations != nil {
		m := make(map[string][]string, len(s.Annotations))
		for shim, a := range s.Annotations {
			m[shim] = slices.Clone(a)
		}
		s.Annotations = m
	}
	return s
}

func newConfig(opts []Option) *config {
	c := &config{
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		maxSize:    DefaultMaxSize,
		maxEntries: DefaultMaxEntries,
		workers:    2,
		uid:        os.Geteuid(),
		gid:        os.Getegid(),
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// WithInstallation installs the payload where the installation says
// (runtime.Installation.Dest): the same value that builds the handlers,
// so the two cannot disagree. The default is the zero Installation, at
// /opt/kata. A relative prefix is refused.
func WithInstallation(inst runtime.Installation) Option {
	return func(c *config) { c.inst = inst }
}

// WithPrefix installs under prefix instead of /opt (an absolute host
// path): the installation's Prefix.
func WithPrefix(prefix string) Option { return func(c *config) { c.inst.Prefix = prefix } }

// WithSuffix names a side-by-side installation, <prefix>/kata-<suffix>:
// the installation's Suffix.
func WithSuffix(suffix string) Option { return func(c *config) { c.inst.Suffix = suffix } }

// WithHandlers makes Install and Plan refuse, before anything is written,
// a payload that would not run these handlers (see Report.CheckHandlers):
// one without a selected shim's configuration, or handlers built for
// another installation. An installer that has its handlers before the
// payload gives them here instead of checking the report afterwards,
// when the payload is already in place.
func WithHandlers(hs []runtime.Handler) Option {
	hs = slices.Clone(hs)
	return func(c *config) { c.handlers = hs }
}

// WithLogger sends progress to l; the default, and nil, discard it.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithMaxSize bounds the total size of a tarball payload's files
// (DefaultMaxSize unless set). It holds whatever the room on the
// destination: a plan, which writes nothing, and a disk large enough to
// take a decompression bomb are bounded by it too. Independently, a
// payload that will not fit on the destination's file system is refused
// with a *NoSpaceError before it fills it.
func WithMaxSize(bytes int64) Option { return func(c *config) { c.maxSize = bytes } }

// WithMaxEntries bounds the number of entries in a tarball payload.
func WithMaxEntries(n int) Option { return func(c *config) { c.maxEntries = n } }

// WithSettings sets all of Kata's own settings at once, replacing any set
// by an earlier option; the With* options below set one each.
func WithSettings(s Settings) Option {
	s = s.clone()
	return func(c *config) { c.settings = s.clone() }
}

// WithDebug turns on Kata's debug settings (runtime, agent, hypervisor
// logs and the agent debug console) for every shim.
func WithDebug() Option { return func(c *config) { c.settings.Debug = true } }

// WithAllowedHypervisorAnnotations lets pods of shim set these hypervisor
// annotations (io.katacontainers.config.hypervisor.<name>). They are added
// to those the shim's configuration already allows.
func WithAllowedHypervisorAnnotations(shim string, annotations ...string) Option {
	return func(c *config) {
		if c.settings.Annotations == nil {
			c.settings.Annotations = map[string][]string{}
		}
		c.settings.Annotations[shim] = append(slices.Clone(c.settings.Annotations[shim]), annotations...)
	}
}

// WithAgentHTTPSProxy makes the guest agent use proxy for HTTPS (image
// pulls in the guest).
func WithAgentHTTPSProxy(proxy string) Option {
	return func(c *config) { c.settings.AgentHTTPSProxy = proxy }
}

// WithAgentNoProxy sets the guest agent's no_proxy list.
func WithAgentNoProxy(noProxy string) Option {
	return func(c *config) { c.settings.AgentNoProxy = noProxy }
}

// WithKernelParams appends parameters to every shim's guest kernel command
// line.
func WithKernelParams(params ...string) Option {
	return func(c *config) { c.settings.KernelParams = append(slices.Clone(c.settings.KernelParams), params...) }
}

// withStepHook calls hook at each step boundary; tests use it to crash or
// fail there.
func withStepHook(hook func(step string)) Option { return func(c *config) { c.hook = hook } }

// withPerFileSync fsyncs every file and directory instead of one syncfs of
// the file system; kept to measure the two against each other.
func withPerFileSync() Option { return func(c *config) { c.perFileSync = true } }

// withoutExchange takes the two-rename path of file systems that cannot
// exchange directories.
func withoutExchange() Option { return func(c *config) { c.noExchange = true } }

func (c *config) step(name string) {
	if c.hook != nil {
		c.hook(name)
	}
}
