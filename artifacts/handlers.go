package artifacts

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// Handlers returns the runtime handlers for shims (see runtime.Handlers)
// of the installation the payload is for (Report.Installation), so that
// the container runtime's config and the payload cannot disagree. Call it
// on the report of Plan (before anything is written) or of Install. opts
// may set the default shim and snapshotters; a prefix or suffix among them
// is overridden. A shim the payload has no configuration for is refused
// (see CheckHandlers).
func (r *Report) Handlers(shims []string, opts ...runtime.HandlerOption) ([]runtime.Handler, error) {
	hs, err := r.Installation.Handlers(shims, opts...)
	if err != nil {
		return nil, err
	}
	if err := r.CheckHandlers(hs); err != nil {
		return nil, err
	}
	return hs, nil
}

// CheckHandlers refuses handlers that would not run this payload: a shim
// binary outside its tree, or a configuration other than the one it put
// in place for the shim. That is what a prefix or suffix given to
// runtime.Handlers but not to Install (or the reverse) leads to. Call it
// before applying a config plan made from handlers built by hand;
// Handlers calls it itself.
func (r *Report) CheckHandlers(hs []runtime.Handler) error {
	for _, h := range hs {
		if !strings.HasPrefix(h.ShimPath, r.Dest+"/") {
			return fmt.Errorf("handler %s runs %s, outside the payload at %s: give runtime.Handlers the payload's prefix and suffix, or use Report.Handlers", h.Name, h.ShimPath, r.Dest)
		}
		got, ok := r.Shims[h.Shim]
		switch {
		case !ok:
			return &MissingShimError{Handler: h.Name, Shim: h.Shim, Dest: r.Dest, Has: slices.Sorted(maps.Keys(r.Shims))}
		case got != h.ConfigPath:
			return fmt.Errorf("handler %s names config %s, but the payload put shim %s's at %s: give runtime.Handlers the payload's prefix and suffix, or use Report.Handlers", h.Name, h.ConfigPath, h.Shim, got)
		}
	}
	return nil
}

// checkHandlers refuses, for WithHandlers, handlers the payload would not
// run.
func (t *target) checkHandlers(rep *Report) error {
	if t.c.handlers == nil {
		return nil
	}
	return rep.CheckHandlers(t.c.handlers)
}

// HostFS returns read access to the host whose root directory is hostRoot,
// for runtime.DetectVariant. Symlinks resolve as the host resolves them:
// an absolute one (a unit file linked from /etc/systemd/system, a unit
// masked to /dev/null) stays inside the root, and none leads out of it,
// which os.DirFS does not ensure.
func HostFS(hostRoot string) (runtime.FS, error) {
	root, err := hostfs.New(hostRoot)
	if err != nil {
		return nil, err
	}
	return root.FS(), nil
}
