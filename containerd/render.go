package containerd

import (
	"fmt"
	"strings"

	"github.com/kata-deploy/kata-deploy/internal/tomltext"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// untrustedRuntime is the runtime name containerd 1.x uses for pods
// annotated io.kubernetes.cri.untrusted-workload: "true".
const untrustedRuntime = "untrusted"

// entry is one runtime table the engine writes.
type entry struct {
	name    string
	handler runtime.Handler
	// runcDefault marks the plain runc runtime that containerd 1.x needs
	// restated once a file names any runtime.
	runcDefault bool
}

// renderTables writes the runtime tables for entries in a config of the
// given version, with eol line endings.
func renderTables(version int, entries []entry, eol string) string {
	var b strings.Builder
	prefix := runtimesKeys(version)
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteString(eol)
	}
	for i, e := range entries {
		if i > 0 {
			b.WriteString(eol)
		}
		table := tomltext.DottedKey(append(prefix, e.name)...)
		line("[%s]", table)
		if e.runcDefault {
			line("  runtime_type = %s", tomltext.String("io.containerd.runc.v2"))
			continue
		}
		h := e.handler
		line("  runtime_type = %s", tomltext.String(h.RuntimeType))
		line("  runtime_path = %s", tomltext.String(h.ShimPath))
		line("  privileged_without_host_devices = %t", h.PrivilegedWithoutHostDevices)
		line("  pod_annotations = %s", tomltext.StringArray(h.PodAnnotations))
		if h.Snapshotter != "" {
			line("  snapshotter = %s", tomltext.String(h.Snapshotter))
		}
		line("[%s.options]", table)
		line("  ConfigPath = %s", tomltext.String(h.ConfigPath))
		if images := imagesPlugin(version); h.Snapshotter != "" && images != "" {
			line("[%s]", tomltext.DottedKey("plugins", images, "runtime_platforms", e.name))
			line("  snapshotter = %s", tomltext.String(h.Snapshotter))
		}
	}
	return b.String()
}
