package containerd

import (
	"errors"
	"fmt"
	"path"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// errNotConstructed is what the methods of an Engine that New did not
// build return, instead of a nil pointer panic deep inside.
var errNotConstructed = errors.New("containerd.Engine used without containerd.New: build it with containerd.New")

// usable refuses an Engine that New did not build (the zero value, or nil).
func (e *Engine) usable() error {
	if e == nil || e.root == nil {
		return errNotConstructed
	}
	return nil
}

// checkRuntime refuses New's variant and version unless they name a
// containerd kata-deploy knows how to configure: an unknown or empty
// variant would be configured as some other one, and what is written
// depends on the release.
func checkRuntime(variant runtime.Variant, version runtime.Version) error {
	if err := variant.Validate(); err != nil {
		return fmt.Errorf("containerd engine: %w", err)
	}
	if variant.Kind() != runtime.Containerd {
		return fmt.Errorf("containerd engine: variant %q does not run containerd", variant)
	}
	if version.IsZero() {
		return fmt.Errorf("containerd engine: containerd version is 0.0.0 (unset): give the release the node runs, e.g. from runtime.ParseRuntime")
	}
	return nil
}

// checkConfigPath refuses an empty config path (WithConfigPath("")), or
// one that names the host root itself: the engine would plan its files at
// the root of the host.
func checkConfigPath(p string) error {
	if p == "" || path.Clean("/"+p) == "/" {
		return fmt.Errorf("containerd engine: WithConfigPath(%q): want the host path of containerd's config file, e.g. %s", p, runtime.VariantContainerd.ConfigPath())
	}
	return nil
}
