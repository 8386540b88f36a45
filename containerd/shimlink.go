package containerd

import (
	"fmt"
	"path"
	"strings"

	"github.com/kata-deploy/kata-deploy/internal/journal"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// ShimLinkDir is the host directory where, for containerd before 1.7, the
// engine links each handler's shim under the name containerd looks for.
//
// containerd 1.6's CRI plugin reads a runtime's runtime_path but never
// hands it to the task service (containerd issue 8207, fixed in 1.7), so
// containerd runs the binary it derives from runtime_type
// ("io.containerd.kata-qemu.v2" -> "containerd-shim-kata-qemu-v2"), looked
// up on its PATH and beside its own executable. /usr/local/bin is on the
// PATH every supported variant's containerd inherits from systemd's
// default one:
//   - plain containerd: containerd.service sets no PATH of its own;
//   - k3s (and rke2, which runs the same agent code; not checked in its
//     source here) prepends its data directory's bin to the PATH it was
//     started with and keeps the rest;
//   - k0s's supervisor prepends its own bin directory the same way;
//   - microk8s's containerd wrapper prepends the snap's directories. The
//     usual, classic-confinement snap shares the host's file system, so
//     the host's /usr/local/bin is the one it searches. A strictly
//     confined microk8s sees its base snap's /usr instead and would not
//     find the link; kata-deploy cannot tell from the outside and does
//     not try.
//
// A containerd started with a PATH of its own that leaves out
// /usr/local/bin does not find the link either, and nothing tells: CRI
// lists the handler all the same, and the first Kata pod fails with
// "binary not installed".
const ShimLinkDir = "/usr/local/bin"

// needsShimLinks reports whether this containerd finds a runtime's shim
// only by the binary name runtime_type implies (see ShimLinkDir). A 1.6
// patch release may carry the backport of the fix; the link is harmless
// there.
func (e *Engine) needsShimLinks() bool { return !readsRuntimeOptions(e.version) }

// ShimBinaryName returns the name of the shim binary containerd before 1.7
// runs for a runtime_type, as containerd derives it from the type's last
// two dot-separated parts: "io.containerd.kata-qemu.v2" ->
// "containerd-shim-kata-qemu-v2". It returns "" for a type containerd
// could not derive a name from.
func ShimBinaryName(runtimeType string) string {
	parts := strings.Split(runtimeType, ".")
	if len(parts) < 2 || parts[len(parts)-2] == "" || parts[len(parts)-1] == "" {
		return ""
	}
	return "containerd-shim-" + parts[len(parts)-2] + "-" + parts[len(parts)-1]
}

// planShimLinks plans, for a containerd that needs them, one symlink in
// ShimLinkDir per handler, named as containerd derives it from the
// handler's runtime_type and pointing at the handler's shim. A name that
// holds anything kata-deploy did not put there (another installer's shim,
// a user's link) is refused, never replaced.
func (e *Engine) planShimLinks(f *files, spec runtime.Spec, j *journal.Journal) error {
	if !e.needsShimLinks() {
		return nil
	}
	var changes []runtime.FileChange
	targets := map[string]string{}
	for _, h := range spec.Handlers {
		name := ShimBinaryName(h.RuntimeType)
		if name == "" {
			return fmt.Errorf("handler %s: containerd %s derives no shim binary name from runtime_type %q", h.Name, e.version, h.RuntimeType)
		}
		if prev, ok := targets[name]; ok {
			if prev != h.ShimPath {
				return fmt.Errorf("handlers need %s/%s to be both %s and %s", ShimLinkDir, name, prev, h.ShimPath)
			}
			continue
		}
		targets[name] = h.ShimPath
		p, err := journal.ResolveLink(e.root, path.Join(ShimLinkDir, name))
		if err != nil {
			return err
		}
		f.links = append(f.links, p)
		state, current, err := journal.LinkAt(e.root, p)
		if err != nil {
			return err
		}
		why := fmt.Sprintf("containerd %s runs the shim of handler %s by this name, found on its PATH", e.version, h.Name)
		switch {
		case state == journal.LinkMissing:
			changes = append(changes, runtime.FileChange{Op: runtime.CreateSymlink, Path: p, Target: h.ShimPath, Why: why})
		case state == journal.LinkSymlink && j.OwnsLink(p, current):
			if current != h.ShimPath {
				// kata-deploy's own link, from an install whose shim
				// lived elsewhere.
				changes = append(changes,
					runtime.FileChange{Op: runtime.RemoveSymlink, Path: p, Target: current, Why: "kata-deploy's link to a former shim path"},
					runtime.FileChange{Op: runtime.CreateSymlink, Path: p, Target: h.ShimPath, Why: why})
			}
		default:
			what := "a file or directory"
			if state == journal.LinkSymlink {
				what = "a symlink to " + current
			}
			return fmt.Errorf("%s: already exists (%s) and kata-deploy did not make it, so it will not replace it; containerd %s runs the shim of handler %s by that name: remove or rename it, then install again",
				p, what, e.version, h.Name)
		}
	}
	if len(changes) == 0 {
		return nil
	}
	dirs, err := journal.PlanDirs(e.root, ShimLinkDir)
	if err != nil {
		return err
	}
	f.changes = append(append(f.changes, dirs...), changes...)
	return nil
}
