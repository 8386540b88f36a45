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
	return []Variant{
		VariantK3s, VariantK3sAgent, VariantRKE2Server, VariantRKE2Agent,
		VariantK0s, VariantMicroK8s, VariantContainerd, VariantCRIO,
	}
}

// ParseVariant parses a variant name as given on a command line.
func ParseVariant(s string) (Variant, error) {
	for _, v := range Variants() {
		if string(v) == s {
			return v, nil
		}
	}
	names := make([]string, 0, 8)
	for _, v := range Variants() {
		names = append(names, string(v))
	}
	return "", fmt.Errorf("unknown container runtime %q (want one of %s)", s, strings.Join(names, ", "))
}

// Kind returns the runtime family of the variant.
func (v Variant) Kind() Kind {
	if v == VariantCRIO {
		return CRIO
	}
	return Containerd
}

// RuntimeUnit returns the systemd unit that runs the variant's container
// runtime, or "" for k0s, which reloads its containerd drop-ins by itself.
func (v Variant) RuntimeUnit() string {
	switch v {
	case VariantContainerd:
		return "containerd.service"
	case VariantCRIO:
		return "crio.service"
	case VariantK3s:
		return "k3s.service"
	case VariantK3sAgent:
		return "k3s-agent.service"
	case VariantRKE2Server:
		return "rke2-server.service"
	case VariantRKE2Agent:
		return "rke2-agent.service"
	case VariantMicroK8s:
		return "snap.microk8s.daemon-containerd.service"
	}
	return ""
}

// CRISocket returns the host path of the CRI socket the variant's runtime
// serves.
func (v Variant) CRISocket() string {
	switch v {
	case VariantCRIO:
		return "/run/crio/crio.sock"
	case VariantK3s, VariantK3sAgent, VariantRKE2Server, VariantRKE2Agent:
		return "/run/k3s/containerd/containerd.sock"
	case VariantK0s:
		return "/run/k0s/containerd.sock"
	case VariantMicroK8s:
		return "/var/snap/microk8s/common/run/containerd.sock"
	}
	return "/run/containerd/containerd.sock"
}

// KubeletUnit returns the systemd unit that runs the kubelet. Distributions
// that embed the kubelet return their own unit; k0s returns "".
func (v Variant) KubeletUnit() string {
	switch v {
	case VariantContainerd, VariantCRIO:
		return "kubelet.service"
	case VariantMicroK8s:
		return "snap.microk8s.daemon-kubelite.service"
	}
	return v.RuntimeUnit()
}

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

// signature is a file whose presence marks a variant.
type signature struct {
	variant Variant
	paths   []string
}

// signatures lists, per variant, files that only that variant installs.
// Unit files are searched in every directory systemd loads units from.
func signatures() []signature {
	unit := func(name string) []string {
		dirs := []string{"/etc/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}
		out := make([]string, len(dirs))
		for i, d := range dirs {
			out[i] = path.Join(d, name)
		}
		return out
	}
	return []signature{
		{VariantK3s, unit("k3s.service")},
		{VariantK3sAgent, unit("k3s-agent.service")},
		{VariantRKE2Server, unit("rke2-server.service")},
		{VariantRKE2Agent, unit("rke2-agent.service")},
		{VariantK0s, append([]string{"/etc/k0s/containerd.d"}, append(unit("k0sworker.service"), unit("k0scontroller.service")...)...)},
		{VariantMicroK8s, []string{"/var/snap/microk8s/current/args/containerd-template.toml"}},
		{VariantContainerd, unit("containerd.service")},
		{VariantCRIO, append(unit("crio.service"), "/etc/crio/crio.conf")},
	}
}

func signaturePaths(kind Kind) []string {
	var out []string
	for _, s := range signatures() {
		if kind == "" || s.variant.Kind() == kind {
			out = append(out, s.paths...)
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
	for _, s := range signatures() {
		if kind != "" && s.variant.Kind() != kind {
			continue
		}
		for _, p := range s.paths {
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
