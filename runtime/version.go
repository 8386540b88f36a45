package runtime

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is a family of container runtimes that Kata registers with.
type Kind string

// The container runtime kinds kata-deploy supports.
const (
	Containerd Kind = "containerd"
	CRIO       Kind = "crio"
)

// Version is a container runtime release: major.minor.patch and whatever
// the distribution appended ("k3s1" in 1.7.22-k3s1, "ds1" in Debian's
// 1.6.20~ds1), which does not take part in comparisons.
type Version struct {
	Major, Minor, Patch int
	Suffix              string
}

// ParseVersion parses "1.6.20", "v2.2.9", "1.7.22-k3s1" or "1.6.20~ds1".
func ParseVersion(s string) (Version, error) {
	rest := strings.TrimPrefix(strings.TrimSpace(s), "v")
	var v Version
	if i := strings.IndexAny(rest, "-+~"); i >= 0 {
		rest, v.Suffix = rest[:i], rest[i+1:]
	}
	parts := strings.Split(rest, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return Version{}, fmt.Errorf("version %q: want major.minor[.patch]", s)
	}
	nums := []*int{&v.Major, &v.Minor, &v.Patch}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Version{}, fmt.Errorf("version %q: %q is not a number", s, p)
		}
		*nums[i] = n
	}
	return v, nil
}

// Compare returns -1, 0 or +1 as v is older than, the same release as, or
// newer than o. Suffixes are ignored.
func (v Version) Compare(o Version) int {
	for _, d := range [...]int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		switch {
		case d < 0:
			return -1
		case d > 0:
			return 1
		}
	}
	return 0
}

// IsZero reports whether v is 0.0.0, which no runtime has released: a
// Version left unset. The config engines refuse it, as what they write
// depends on the release.
func (v Version) IsZero() bool { return v.Major == 0 && v.Minor == 0 && v.Patch == 0 }

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return v.Compare(Version{Major: major, Minor: minor}) >= 0
}

// String returns the version as it was given, without a leading "v".
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Suffix != "" {
		s += "-" + v.Suffix
	}
	return s
}

// Runtime is the container runtime a node reports.
type Runtime struct {
	Kind    Kind
	Version Version
}

// String returns the runtime in the kubelet's form, "containerd://1.6.20".
func (r Runtime) String() string {
	scheme := string(r.Kind)
	if r.Kind == CRIO {
		scheme = "cri-o"
	}
	return scheme + "://" + r.Version.String()
}

// ParseKind parses the runtime name a kubelet reports before "://" in a
// Node's status.nodeInfo.containerRuntimeVersion: "containerd", or "cri-o"
// (also "crio").
func ParseKind(name string) (Kind, error) {
	switch name {
	case "containerd":
		return Containerd, nil
	case "cri-o", "crio":
		return CRIO, nil
	}
	return "", fmt.Errorf("unsupported runtime %q (want containerd or cri-o)", name)
}

// ParseRuntime parses a Node's status.nodeInfo.containerRuntimeVersion, such
// as "containerd://1.6.20", "containerd://1.7.22-k3s1" or "cri-o://1.34.0".
func ParseRuntime(s string) (Runtime, error) {
	scheme, ver, ok := strings.Cut(s, "://")
	if !ok {
		return Runtime{}, fmt.Errorf("container runtime version %q: want <runtime>://<version>", s)
	}
	kind, err := ParseKind(scheme)
	if err != nil {
		return Runtime{}, fmt.Errorf("container runtime version %q: %w", s, err)
	}
	v, err := ParseVersion(ver)
	if err != nil {
		return Runtime{}, fmt.Errorf("container runtime version %q: %w", s, err)
	}
	return Runtime{Kind: kind, Version: v}, nil
}
