// Package hostnode is what the installer and the cleanup both need to know
// of the node they run on: which runtime variant it runs, and where the
// host's systemd listens. It exists so that both commands answer these the
// same way without the cleanup linking the install machinery.
package hostnode

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/runtime"
	"github.com/kata-deploy/kata-deploy/systemd"
)

// Variant works out how the runtime is packaged, and returns the runtime
// the Node reports, parsed. want is a runtime.Variant name, or "" or
// "auto" to detect it from the host's files.
//
// What the Node says is a hint, never a requirement: with node nil (no API
// server), an API server that does not answer, or a runtime the kubelet
// could not ask (it reports "containerd://Unknown" while the runtime
// restarts), the Runtime has no version (the zero Version), and its Kind
// only where the report named one. The caller then asks the runtime itself,
// or goes by its install record, so that a restarting runtime or an
// unreachable API server never stops an install or an uninstall.
func Variant(ctx context.Context, root *hostfs.Root, node *nodelabel.Client, want string, log *slog.Logger) (runtime.Variant, runtime.Runtime, error) {
	rt := reported(ctx, node, log)
	if want == "" || want == "auto" {
		v, _, err := runtime.DetectVariant(root.FS(), rt.Kind)
		return v, rt, err
	}
	v, err := runtime.ParseVariant(want)
	if err != nil {
		return "", runtime.Runtime{}, err
	}
	if rt.Kind != "" && v.Kind() != rt.Kind {
		return "", runtime.Runtime{}, fmt.Errorf("the runtime is set to %s, but the node reports %s", v, rt.Kind)
	}
	return v, rt, nil
}

// reported is what the Node reports of its runtime, as far as it can be
// trusted now (see Variant).
func reported(ctx context.Context, node *nodelabel.Client, log *slog.Logger) runtime.Runtime {
	if node == nil {
		return runtime.Runtime{}
	}
	ctx, cancel := context.WithTimeout(ctx, nodeReadTimeout)
	defer cancel()
	s, err := node.ReportedRuntime(ctx)
	if err != nil {
		log.Warn("cannot read the runtime the Node reports; asking the runtime itself", "err", err)
		return runtime.Runtime{}
	}
	if rt, err := runtime.ParseRuntime(s); err == nil {
		return rt
	}
	name, _, _ := strings.Cut(s, "://")
	kind, err := runtime.ParseKind(name)
	if err != nil {
		kind = ""
	}
	if s != "" {
		log.Info("the Node reports no runtime version (the runtime may be restarting); asking the runtime itself", "reported", s)
	}
	return runtime.Runtime{Kind: kind}
}

// nodeReadTimeout bounds the read of the Node: it is a hint, and an API
// server that does not answer must not hold up the node's own work.
const nodeReadTimeout = 10 * time.Second

// SystemdSocket returns where systemd's socket is on this machine: socket
// (or systemd's default when empty) is a host path, resolved under the
// host root like every other host path, symlinks included.
func SystemdSocket(root *hostfs.Root, socket string) (string, error) {
	if socket == "" {
		socket = systemd.DefaultSocket
	}
	resolved, err := root.Resolve(socket)
	if err != nil {
		return "", err
	}
	return root.HostPath(resolved), nil
}
