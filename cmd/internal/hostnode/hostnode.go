// Package hostnode is what the installer and the cleanup both need to know
// of the node they run on: which runtime variant it runs, and where the
// host's systemd listens. It exists so that both commands answer these the
// same way without the cleanup linking the install machinery.
package hostnode

import (
	"context"
	"fmt"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/runtime"
	"github.com/kata-deploy/kata-deploy/systemd"
)

// Variant works out how the runtime is packaged, and returns the runtime
// the Node reports, parsed (the zero Runtime when node is nil: no API
// server, or when the Node reports none). want is a runtime.Variant name,
// or "" or "auto" to detect it from the host's files.
func Variant(ctx context.Context, root *hostfs.Root, node *nodelabel.Client, want string) (runtime.Variant, runtime.Runtime, error) {
	var reported string
	if node != nil {
		var err error
		if reported, err = node.ReportedRuntime(ctx); err != nil {
			return "", runtime.Runtime{}, err
		}
	}
	var rt runtime.Runtime
	if reported != "" {
		var err error
		if rt, err = runtime.ParseRuntime(reported); err != nil {
			return "", runtime.Runtime{}, err
		}
	}
	if want == "" || want == "auto" {
		v, _, err := runtime.DetectVariant(root.FS(), rt.Kind)
		return v, rt, err
	}
	v, err := runtime.ParseVariant(want)
	if err != nil {
		return "", runtime.Runtime{}, err
	}
	if rt.Kind != "" && v.Kind() != rt.Kind {
		return "", runtime.Runtime{}, fmt.Errorf("the runtime is set to %s, but the node reports %s", v, reported)
	}
	return v, rt, nil
}

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
