package crio

import (
	"errors"
	"fmt"
	"path"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// errNotConstructed is what the methods of an Engine that New did not
// build return, instead of a nil pointer panic deep inside.
var errNotConstructed = errors.New("crio.Engine used without crio.New: build it with crio.New")

// usable refuses an Engine that New did not build (the zero value, or nil).
func (e *Engine) usable() error {
	if e == nil || e.root == nil {
		return errNotConstructed
	}
	return nil
}

// checkVersion refuses New's version when it was left unset: what is
// written depends on the release.
func checkVersion(version runtime.Version) error {
	if version.IsZero() {
		return errors.New("crio engine: CRI-O version is 0.0.0 (unset): give the release the node runs, e.g. from runtime.ParseRuntime")
	}
	return nil
}

// checkPaths refuses an empty drop-in directory or config file given as
// an option, or one that names the host root itself: the engine would
// plan /99-kata-deploy.conf at the root of the host.
func checkPaths(configDir, configFile string) error {
	if configDir == "" || path.Clean("/"+configDir) == "/" {
		return fmt.Errorf("crio engine: WithConfigDir(%q): want the host path of CRI-O's drop-in directory, e.g. %s", configDir, runtime.VariantCRIO.DropInDir())
	}
	if configFile == "" || path.Clean("/"+configFile) == "/" {
		return fmt.Errorf("crio engine: WithConfigFile(%q): want the host path of CRI-O's config file, e.g. %s", configFile, runtime.VariantCRIO.ConfigPath())
	}
	return nil
}
