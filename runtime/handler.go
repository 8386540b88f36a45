package runtime

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// DefaultPrefix is the host directory Kata is installed under, as
// <prefix>/kata or, for a named second install, <prefix>/kata-<suffix>
// (see Installation).
const DefaultPrefix = "/opt"

// DefaultHandlerName is the handler of the default "kata" RuntimeClass.
const DefaultHandlerName = "kata"

// Shim is one way Kata can run a pod: a shim binary (the Go runtime or the
// Rust runtime-rs) with a hypervisor configuration.
type Shim struct {
	// Name is the shim's name as Kata and its RuntimeClasses use it ("qemu").
	Name string
	// RuntimeRS says the shim is the Rust runtime, which has its own binary
	// and configuration directory.
	RuntimeRS bool
	// ConfigFile is the configuration's file name, e.g. "configuration-qemu.toml".
	ConfigFile string
	// Snapshotter is the containerd snapshotter the shim needs, if any.
	Snapshotter string
}

// Shims returns the catalogue of shims Kata ships, in a stable order.
func Shims() []Shim {
	goShim := func(name string) Shim {
		return Shim{Name: name, ConfigFile: "configuration-" + name + ".toml"}
	}
	rsShim := func(name string) Shim {
		return Shim{Name: name, RuntimeRS: true, ConfigFile: "configuration-" + name + ".toml"}
	}
	return []Shim{
		goShim("qemu"),
		goShim("clh"),
		goShim("fc"),
		goShim("qemu-tdx"),
		goShim("qemu-snp"),
		goShim("qemu-se"),
		goShim("qemu-coco-dev"),
		goShim("qemu-nvidia-gpu"),
		goShim("qemu-nvidia-gpu-snp"),
		goShim("qemu-nvidia-gpu-tdx"),
		goShim("stratovirt"),
		rsShim("dragonball"),
		rsShim("cloud-hypervisor"),
		rsShim("qemu-runtime-rs"),
		rsShim("qemu-se-runtime-rs"),
		rsShim("qemu-coco-dev-runtime-rs"),
	}
}

// LookupShim returns the catalogue entry named name.
func LookupShim(name string) (Shim, error) {
	var names []string
	for _, s := range Shims() {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Shim{}, fmt.Errorf("unknown Kata shim %q (known: %s)", name, strings.Join(names, ", "))
}

// Handler is one Kata runtime handler as a container runtime registers it
// and a RuntimeClass names it.
type Handler struct {
	// Name is the CRI runtime handler, e.g. "kata-qemu".
	Name string
	// Shim is the catalogue name of the shim, e.g. "qemu".
	Shim string
	// RuntimeType is containerd's runtime_type, e.g. "io.containerd.kata-qemu.v2".
	RuntimeType string
	// ShimPath is the host path of the shim binary.
	ShimPath string
	// ConfigPath is the host path of the Kata configuration file.
	ConfigPath string
	// PodAnnotations are the pod annotations passed through to Kata.
	PodAnnotations []string
	// PrivilegedWithoutHostDevices keeps privileged pods from seeing host devices.
	PrivilegedWithoutHostDevices bool
	// Snapshotter is the containerd snapshotter for this handler, if any.
	Snapshotter string
}

// HandlerOption adjusts how Handlers builds the handler set.
type HandlerOption func(*handlerConfig)

type handlerConfig struct {
	inst        Installation
	emptyPrefix bool // WithPrefix(""): a mistake, not the default
	defaultShim string
	snapshotter map[string]string
}

// WithPrefix sets the host directory Kata is installed under
// (DefaultPrefix if not set): Handlers(shims, WithPrefix(p)) is
// Installation{Prefix: p}.Handlers(shims). Give the payload the same
// installation (artifacts.WithInstallation), or build the handlers from
// the payload's report (artifacts.Report.Handlers), which cannot disagree
// with it.
func WithPrefix(prefix string) HandlerOption {
	return func(c *handlerConfig) { c.inst.Prefix, c.emptyPrefix = prefix, prefix == "" }
}

// WithSuffix names a second, independent install: files under
// "<prefix>/kata-<suffix>" and handlers "kata-<shim>-<suffix>" (see
// Installation).
func WithSuffix(suffix string) HandlerOption {
	return func(c *handlerConfig) { c.inst.Suffix = suffix }
}

// WithDefaultShim picks the shim behind the default "kata" handler (the
// first shim given to Handlers if not set).
func WithDefaultShim(shim string) HandlerOption {
	return func(c *handlerConfig) { c.defaultShim = shim }
}

// WithSnapshotter gives one shim a containerd snapshotter, e.g. "fc" ->
// "devmapper".
func WithSnapshotter(shim, snapshotter string) HandlerOption {
	return func(c *handlerConfig) { c.snapshotter[shim] = snapshotter }
}

// Handlers returns the default "kata" handler followed by one "kata-<shim>"
// handler per named shim, in the order given, for the installation the
// options name (the default one unless WithPrefix or WithSuffix).
func Handlers(shims []string, opts ...HandlerOption) ([]Handler, error) {
	c := handlerConfig{snapshotter: map[string]string{}}
	for _, o := range opts {
		o(&c)
	}
	if c.emptyPrefix {
		return nil, fmt.Errorf("install prefix \"\": want an absolute host path, e.g. %s", DefaultPrefix)
	}
	return c.inst.handlers(shims, c)
}

// Handlers returns the install's default handler followed by one handler
// per named shim, in the order given. A prefix or suffix among opts is
// overridden by the installation's own.
func (i Installation) Handlers(shims []string, opts ...HandlerOption) ([]Handler, error) {
	c := handlerConfig{snapshotter: map[string]string{}}
	for _, o := range opts {
		o(&c)
	}
	return i.handlers(shims, c)
}

func (i Installation) handlers(shims []string, c handlerConfig) ([]Handler, error) {
	if len(shims) == 0 {
		return nil, fmt.Errorf("no Kata shims selected")
	}
	if err := i.Validate(); err != nil {
		return nil, err
	}
	if c.defaultShim == "" {
		c.defaultShim = shims[0]
	}
	seen := map[string]bool{}
	var out []Handler
	var def *Handler
	for _, name := range shims {
		if seen[name] {
			//lint:ignore ST1005 "Kata" is a proper noun (the project's name), not a capitalised word.
			return nil, fmt.Errorf("Kata shim %q selected twice", name)
		}
		seen[name] = true
		s, err := LookupShim(name)
		if err != nil {
			return nil, err
		}
		h := i.handler(s)
		if sn, ok := c.snapshotter[name]; ok {
			h.Snapshotter = sn
		}
		out = append(out, h)
		if name == c.defaultShim {
			d := h
			def = &d
		}
	}
	if def == nil {
		return nil, fmt.Errorf("default Kata shim %q is not among the selected shims %v", c.defaultShim, shims)
	}
	def.Name = i.DefaultHandlerName()
	def.RuntimeType = "io.containerd." + def.Name + ".v2"
	def.PodAnnotations = append([]string(nil), def.PodAnnotations...)
	out = append([]Handler{*def}, out...)
	for _, h := range out {
		if err := CheckHandlerName(h.Name); err != nil {
			return nil, fmt.Errorf("%w: use a shorter install suffix", err)
		}
	}
	return out, nil
}

// maxNameLen is a DNS label's length limit, which a RuntimeClass's handler
// field shares.
const maxNameLen = 63

// CheckHandlerName refuses a handler name that a RuntimeClass could not
// name or a config file could not hold safely: it must be a DNS-1123 label
// (at most 63 lower-case letters, digits and '-', starting and ending with
// a letter or digit), as Kubernetes requires of RuntimeClass handlers.
func CheckHandlerName(name string) error {
	if len(name) > maxNameLen || !validName(name) {
		return fmt.Errorf("handler name %q: want a DNS-1123 label (at most %d lower-case letters, digits and '-', starting and ending with a letter or digit)", name, maxNameLen)
	}
	return nil
}

// Validate refuses a spec that no config engine could register correctly:
// no handlers, a handler name that is not a DNS-1123 label (see
// CheckHandlerName) or given twice, a shim or config path that is not an
// absolute, clean host path, or an unknown mode. Both config engines call
// it before planning; it helps an importer that builds handlers by hand.
func (s Spec) Validate() error {
	if len(s.Handlers) == 0 {
		return errors.New("no handlers to register")
	}
	switch s.Mode {
	case "", ModeRuntimeClass, ModeUntrusted:
	default:
		return fmt.Errorf("unknown mode %q (want %s or %s)", s.Mode, ModeRuntimeClass, ModeUntrusted)
	}
	seen := map[string]bool{}
	for _, h := range s.Handlers {
		if err := CheckHandlerName(h.Name); err != nil {
			return err
		}
		if seen[h.Name] {
			return fmt.Errorf("handler %s given twice", h.Name)
		}
		seen[h.Name] = true
		for _, p := range []struct{ what, path string }{{"shim path", h.ShimPath}, {"config path", h.ConfigPath}} {
			if !path.IsAbs(p.path) || path.Clean(p.path) != p.path {
				return fmt.Errorf("handler %s: %s %q: want an absolute, clean host path", h.Name, p.what, p.path)
			}
		}
	}
	return nil
}

func (i Installation) handler(s Shim) Handler {
	name := i.HandlerName(s.Name)
	return Handler{
		Name:                         name,
		Shim:                         s.Name,
		RuntimeType:                  "io.containerd." + name + ".v2",
		ShimPath:                     i.ShimPath(s),
		ConfigPath:                   i.ConfigPath(s),
		PodAnnotations:               []string{"io.katacontainers.*"},
		PrivilegedWithoutHostDevices: true,
		Snapshotter:                  s.Snapshotter,
	}
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return s != "" && s[0] != '-' && s[len(s)-1] != '-'
}

// Mode says how pods opt in to Kata.
type Mode string

const (
	// ModeRuntimeClass registers one handler per shim; pods choose Kata
	// with runtimeClassName. The default.
	ModeRuntimeClass Mode = "runtimeclass"
	// ModeUntrusted is the original kata-deploy flow: the default Kata
	// handler also becomes the runtime for pods annotated as untrusted
	// workloads (io.kubernetes.cri.untrusted-workload: "true"). containerd
	// 1.x only: CRI-O dropped its TrustedSandbox annotation in 1.14 and
	// the CRI-O engine refuses this mode.
	ModeUntrusted Mode = "untrusted"
)

// ParseMode parses a mode name as given on a command line.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeRuntimeClass, ModeUntrusted:
		return Mode(s), nil
	}
	return "", fmt.Errorf("unknown mode %q (want %s or %s)", s, ModeRuntimeClass, ModeUntrusted)
}

// HandlerNames returns the names of the spec's handlers, in order: what
// the runtime must serve once the spec is registered.
func (s Spec) HandlerNames() []string {
	names := make([]string, len(s.Handlers))
	for i, h := range s.Handlers {
		names[i] = h.Name
	}
	return names
}

// Spec is what a config engine registers with a container runtime.
type Spec struct {
	// Handlers to register; the first is the default one (see Handlers).
	Handlers []Handler
	// Mode decides whether the default handler also serves untrusted
	// workloads; empty means ModeRuntimeClass.
	Mode Mode
}
