package runtime

import (
	"fmt"
	"path"
)

// Installation is one Kata install on a host: where its tree lives
// (<Prefix>/kata, or <Prefix>/kata-<Suffix> for a second, independent
// install), where each shim's binary and configuration are in that tree,
// what its runtime handlers are called and the name its config engines
// register it under. It is the one place these are computed: Handlers,
// the artifacts package (artifacts.WithInstallation) and kata-deploy's
// installer all ask it, so that a payload and the runtime config written
// for it cannot disagree. The zero value is the default install under
// DefaultPrefix.
type Installation struct {
	// Prefix is the absolute host directory the tree goes in;
	// DefaultPrefix when empty.
	Prefix string
	// Suffix names a second, independent install: its tree, handlers and
	// engine name all carry it. Empty for the default install.
	Suffix string
}

// Validate refuses a prefix that is not an absolute host path (relative
// shim paths in a runtime config resolve against the runtime's working
// directory) and a suffix that would not make valid handler names
// (Handlers also refuses one that makes a selected shim's handler name too
// long).
func (i Installation) Validate() error {
	if i.Prefix != "" && !path.IsAbs(i.Prefix) {
		return fmt.Errorf("install prefix %q: want an absolute host path, e.g. %s", i.Prefix, DefaultPrefix)
	}
	if i.Suffix != "" && !validName(i.Suffix) {
		return fmt.Errorf("install suffix %q: want lower-case letters, digits and '-'", i.Suffix)
	}
	return nil
}

// Dest is the host path of the install's tree: /opt/kata by default.
func (i Installation) Dest() string {
	prefix := i.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return path.Join(path.Clean(prefix), i.named("kata"))
}

// ShimPath is the host path of the binary that runs shim s.
func (i Installation) ShimPath(s Shim) string { return path.Join(i.Dest(), s.Binary()) }

// ConfigPath is the host path of the Kata configuration shim s runs with.
func (i Installation) ConfigPath(s Shim) string { return path.Join(i.Dest(), s.ConfigPath()) }

// HandlerName is the runtime handler of shim: "kata-<shim>[-<suffix>]".
func (i Installation) HandlerName(shim string) string { return i.named("kata-" + shim) }

// DefaultHandlerName is the handler of the install's default shim:
// "kata[-<suffix>]", which the default RuntimeClass names.
func (i Installation) DefaultHandlerName() string { return i.named(DefaultHandlerName) }

// EngineName is the name the config engines register the install under
// (containerd.WithName, crio.WithName): "kata-deploy[-<suffix>]". Two
// installs on one node must have different names, or the second replaces
// the first's handlers.
func (i Installation) EngineName() string { return i.named("kata-deploy") }

func (i Installation) named(name string) string {
	if i.Suffix == "" {
		return name
	}
	return name + "-" + i.Suffix
}

// Binary is the path of the shim's binary inside an install's tree: the
// Go runtime's or, for a runtime-rs shim, the Rust runtime's.
func (s Shim) Binary() string {
	if s.RuntimeRS {
		return "runtime-rs/bin/containerd-shim-kata-v2"
	}
	return "bin/containerd-shim-kata-v2"
}

// ConfigDir is the directory inside an install's tree where Kata's
// payload puts the shim's configuration (ConfigFile).
func (s Shim) ConfigDir() string {
	if s.RuntimeRS {
		return "share/defaults/kata-containers/runtime-rs"
	}
	return "share/defaults/kata-containers"
}

// ConfigPath is the path inside an install's tree of the configuration
// the shim runs with: runtimes/<name>/<ConfigFile> in ConfigDir, a
// directory of the shim's own holding a link to the payload's file and
// the shim's config.d, so that a drop-in for one hypervisor never reaches
// another's configuration (the artifacts package makes it).
func (s Shim) ConfigPath() string {
	return path.Join(s.ConfigDir(), "runtimes", s.Name, s.ConfigFile)
}
