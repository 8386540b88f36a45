package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// Variant is how a container runtime is packaged on a node: plain containerd
// or CRI-O, or the containerd embedded in a Kubernetes distribution. It
// decides where the runtime's configuration lives and which unit runs it.
type Variant string

// The variants kata-deploy knows.
const (
	VariantContainerd Variant = "containerd"
	VariantCRIO       Variant = "crio"
	VariantK3s        Variant = "k3s"
	VariantK3sAgent   Variant = "k3s-agent"
	VariantRKE2Server Variant = "rke2-server"
	VariantRKE2Agent  Variant = "rke2-agent"
	VariantK0s        Variant = "k0s"
	VariantMicroK8s   Variant = "microk8s"
)

// Variants returns every known variant, in detection order.
func Variants() []Variant {
	table := variantTable()
	out := make([]Variant, len(table))
	for i, f := range table {
		out[i] = f.variant
	}
	return out
}

// ConfigStrategy is how kata-deploy registers its handlers with a
// variant's runtime: which file it writes, and which it must never edit.
// The config engines act on it, so a variant added to the table is handled
// as its strategy says, and one without a strategy an engine knows is
// refused rather than taken for another.
type ConfigStrategy string

// The config strategies of the variants kata-deploy knows.
const (
	// StrategyMainFile: the runtime reads one main config file, which
	// kata-deploy edits, or makes import a drop-in of its own
	// (containerd).
	StrategyMainFile ConfigStrategy = "main-file"
	// StrategyRendered: the distribution renders the main config from a
	// template at every start, so it is never edited; the handlers go into
	// a drop-in directory the rendered config imports (k3s, rke2).
	StrategyRendered ConfigStrategy = "rendered"
	// StrategyTemplate: the file kata-deploy reads is the template the
	// runtime's config is rendered from, edited in place (microk8s).
	StrategyTemplate ConfigStrategy = "template"
	// StrategyDropInDir: the runtime loads every file of a drop-in
	// directory by itself, whatever its main config says (k0s, CRI-O).
	StrategyDropInDir ConfigStrategy = "drop-in-dir"
)

// variantFacts is everything kata-deploy knows about one variant; each
// fact lives here and nowhere else (the engines ask the accessors below).
type variantFacts struct {
	variant  Variant
	kind     Kind
	strategy ConfigStrategy
	// unit runs the container runtime ("" for k0s, which reloads its
	// containerd drop-ins by itself); kubeletUnit runs the kubelet.
	unit, kubeletUnit string
	criSocket         string
	// configPath is the config kata-deploy reads: the main file, or for
	// k0s the drop-in directory it loads by itself. dropInDir is a
	// directory the runtime loads drop-ins from whatever its main config
	// says, or "".
	configPath, dropInDir string
	// signatures are files only this variant installs, in the order they
	// are looked for (the first found is the evidence).
	signatures []string
}

// variantTable lists the variants in detection order.
func variantTable() []variantFacts {
	const (
		containerdSocket = "/run/containerd/containerd.sock"
		k3sSocket        = "/run/k3s/containerd/containerd.sock"
		k0sDropIns       = "/etc/k0s/containerd.d"
		microk8sTemplate = "/var/snap/microk8s/current/args/containerd-template.toml"
		crioConfig       = "/etc/crio/crio.conf"
	)
	// Unit files are searched in every directory systemd loads units from.
	unit := func(names ...string) []string {
		dirs := []string{"/etc/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}
		var out []string
		for _, n := range names {
			for _, d := range dirs {
				out = append(out, path.Join(d, n))
			}
		}
		return out
	}
	return []variantFacts{
		{variant: VariantK3s, kind: Containerd, strategy: StrategyRendered, unit: "k3s.service", kubeletUnit: "k3s.service", criSocket: k3sSocket,
			configPath: "/var/lib/rancher/k3s/agent/etc/containerd/config.toml", signatures: unit("k3s.service")},
		{variant: VariantK3sAgent, kind: Containerd, strategy: StrategyRendered, unit: "k3s-agent.service", kubeletUnit: "k3s-agent.service", criSocket: k3sSocket,
			configPath: "/var/lib/rancher/k3s/agent/etc/containerd/config.toml", signatures: unit("k3s-agent.service")},
		{variant: VariantRKE2Server, kind: Containerd, strategy: StrategyRendered, unit: "rke2-server.service", kubeletUnit: "rke2-server.service", criSocket: k3sSocket,
			configPath: "/var/lib/rancher/rke2/agent/etc/containerd/config.toml", signatures: unit("rke2-server.service")},
		{variant: VariantRKE2Agent, kind: Containerd, strategy: StrategyRendered, unit: "rke2-agent.service", kubeletUnit: "rke2-agent.service", criSocket: k3sSocket,
			configPath: "/var/lib/rancher/rke2/agent/etc/containerd/config.toml", signatures: unit("rke2-agent.service")},
		{variant: VariantK0s, kind: Containerd, strategy: StrategyDropInDir, criSocket: "/run/k0s/containerd.sock",
			configPath: k0sDropIns, dropInDir: k0sDropIns, signatures: append([]string{k0sDropIns}, unit("k0sworker.service", "k0scontroller.service")...)},
		{variant: VariantMicroK8s, kind: Containerd, strategy: StrategyTemplate, unit: "snap.microk8s.daemon-containerd.service", kubeletUnit: "snap.microk8s.daemon-kubelite.service",
			criSocket: "/var/snap/microk8s/common/run/containerd.sock", configPath: microk8sTemplate, signatures: []string{microk8sTemplate}},
		{variant: VariantContainerd, kind: Containerd, strategy: StrategyMainFile, unit: "containerd.service", kubeletUnit: "kubelet.service", criSocket: containerdSocket,
			configPath: "/etc/containerd/config.toml", signatures: unit("containerd.service")},
		{variant: VariantCRIO, kind: CRIO, strategy: StrategyDropInDir, unit: "crio.service", kubeletUnit: "kubelet.service", criSocket: "/run/crio/crio.sock",
			configPath: crioConfig, dropInDir: "/etc/crio/crio.conf.d", signatures: append(unit("crio.service"), crioConfig)},
	}
}

// facts returns v's row. A variant not in the table (one built without
// ParseVariant, the empty one included) has no facts at all: every
// accessor returns "" for it, and Validate refuses it. It is never taken
// for another variant.
func (v Variant) facts() variantFacts {
	for _, f := range variantTable() {
		if f.variant == v {
			return f
		}
	}
	return variantFacts{variant: v}
}

// ParseVariant parses a variant name as given on a command line.
func ParseVariant(s string) (Variant, error) {
	v := Variant(s)
	if err := v.Validate(); err != nil {
		return "", err
	}
	return v, nil
}

// Validate refuses a variant that is not in the table, the empty one
// included: nothing is known about where its runtime keeps its config or
// serves CRI, and guessing would write where no runtime reads.
func (v Variant) Validate() error {
	if v.facts().kind != "" {
		return nil
	}
	names := make([]string, 0, 8)
	for _, k := range Variants() {
		names = append(names, string(k))
	}
	if v == "" {
		return fmt.Errorf("no container runtime variant given (want one of %s)", strings.Join(names, ", "))
	}
	return fmt.Errorf("unknown container runtime %q (want one of %s)", string(v), strings.Join(names, ", "))
}

// Kind returns the runtime family of the variant ("" for one Validate
// refuses).
func (v Variant) Kind() Kind { return v.facts().kind }

// ConfigStrategy returns how kata-deploy registers handlers with the
// variant's runtime ("" for one Validate refuses).
func (v Variant) ConfigStrategy() ConfigStrategy { return v.facts().strategy }

// RuntimeUnit returns the systemd unit that runs the variant's container
// runtime, or "" for k0s, which reloads its containerd drop-ins by itself.
func (v Variant) RuntimeUnit() string { return v.facts().unit }

// CRISocket returns the host path of the CRI socket the variant's runtime
// serves.
func (v Variant) CRISocket() string { return v.facts().criSocket }

// KubeletUnit returns the systemd unit that runs the kubelet. Distributions
// that embed the kubelet return their own unit; k0s returns "".
func (v Variant) KubeletUnit() string { return v.facts().kubeletUnit }

// ConfigPath returns the host path of the runtime configuration
// kata-deploy reads on this variant: the main config file
// (/etc/containerd/config.toml, /etc/crio/crio.conf, k3s's rendered
// config.toml, microk8s's containerd template), or for k0s the drop-in
// directory it loads by itself.
func (v Variant) ConfigPath() string { return v.facts().configPath }

// DropInDir returns the directory the variant's runtime loads drop-in
// config files from whatever its main config says (/etc/crio/crio.conf.d,
// k0s's /etc/k0s/containerd.d), or "" where drop-ins load only through the
// main config's imports.
func (v Variant) DropInDir() string { return v.facts().dropInDir }

// FS is the read access to a host root that detection needs: an
// io/fs.StatFS whose names are host paths without the leading slash, as
// io/fs requires (e.g. "etc/systemd/system/k3s.service"). Build one for a
// host root directory with artifacts.HostFS, which resolves symlinks as the
// host does, inside the root; os.DirFS(hostRoot) also fits, but resolves an
// absolute symlink on this machine instead of on the host. Tests can use a
// testing/fstest.MapFS.
type FS = fs.StatFS

// Evidence is one file that points to a variant.
type Evidence struct {
	Variant Variant
	Path    string // host path, e.g. /etc/systemd/system/k3s.service
}

// NoRuntimeError says that detection found no known container runtime.
type NoRuntimeError struct {
	Kind Kind // the kind looked for, "" for any
}

func (e *NoRuntimeError) Error() string {
	what := "container runtime"
	if e.Kind != "" {
		what = string(e.Kind)
	}
	return "no " + what + " found on the host (looked for " + strings.Join(signaturePaths(e.Kind), ", ") + "); set the runtime explicitly"
}

// AmbiguousError says that detection found more than one variant and will
// not guess between them.
type AmbiguousError struct {
	Found []Evidence
}

func (e *AmbiguousError) Error() string {
	var b strings.Builder
	b.WriteString("more than one container runtime found on the host; set the runtime explicitly:")
	for _, ev := range e.Found {
		fmt.Fprintf(&b, " %s (%s);", ev.Variant, ev.Path)
	}
	return strings.TrimSuffix(b.String(), ";")
}

func signaturePaths(kind Kind) []string {
	var out []string
	for _, f := range variantTable() {
		if kind == "" || f.kind == kind {
			out = append(out, f.signatures...)
		}
	}
	return out
}

// DetectVariant finds how the container runtime is packaged on the host
// whose root file system hostRoot reads (see FS; artifacts.HostFS builds
// one from a directory such as "/host"). kind, when not empty, narrows the search to one
// runtime family (from the Node's reported runtime). A distribution that
// embeds containerd wins over a stand-alone containerd.service, which such
// hosts often carry unused; any other combination is an *AmbiguousError,
// and a host with none is a *NoRuntimeError.
func DetectVariant(hostRoot FS, kind Kind) (Variant, []Evidence, error) {
	var found []Evidence
	for _, s := range variantTable() {
		if kind != "" && s.kind != kind {
			continue
		}
		for _, p := range s.signatures {
			fi, err := hostRoot.Stat(strings.TrimPrefix(p, "/"))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return "", nil, fmt.Errorf("detect container runtime: %w", err)
			}
			// A masked unit is a symlink to /dev/null: not a runtime.
			if err == nil && (fi.Mode().IsRegular() || fi.IsDir()) {
				found = append(found, Evidence{Variant: s.variant, Path: p})
				break
			}
		}
	}
	distros := found[:0:0]
	for _, ev := range found {
		if ev.Variant != VariantContainerd && ev.Variant != VariantCRIO {
			distros = append(distros, ev)
		}
	}
	candidates := found
	if len(distros) > 0 {
		candidates = distros
	}
	switch len(candidates) {
	case 0:
		return "", nil, &NoRuntimeError{Kind: kind}
	case 1:
		return candidates[0].Variant, found, nil
	default:
		return "", found, &AmbiguousError{Found: candidates}
	}
}
