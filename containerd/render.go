package containerd

import (
	"fmt"
	"strings"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// Plugin IDs that hold the CRI runtimes, per config version.
const (
	criV1      = "cri"
	criV2      = "io.containerd.grpc.v1.cri"
	criRuntime = "io.containerd.cri.v1.runtime"
	criImages  = "io.containerd.cri.v1.images"
)

// untrustedRuntime is the runtime name containerd 1.x uses for pods
// annotated io.kubernetes.cri.untrusted-workload: "true".
const untrustedRuntime = "untrusted"

// criPlugin returns the plugin ID whose table holds the runtimes.
func criPlugin(version int) string {
	switch version {
	case 1:
		return criV1
	case 2:
		return criV2
	}
	return criRuntime
}

// runtimesKeys is the key path of the runtimes table.
func runtimesKeys(version int) []string {
	return []string{"plugins", criPlugin(version), "containerd", "runtimes"}
}

func dotted(keys ...string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = quoteKey(k)
	}
	return strings.Join(q, ".")
}

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
		table := dotted(append(prefix, e.name)...)
		line("[%s]", table)
		if e.runcDefault {
			line("  runtime_type = %s", quoteString("io.containerd.runc.v2"))
			continue
		}
		h := e.handler
		line("  runtime_type = %s", quoteString(h.RuntimeType))
		line("  runtime_path = %s", quoteString(h.ShimPath))
		line("  privileged_without_host_devices = %t", h.PrivilegedWithoutHostDevices)
		line("  pod_annotations = %s", stringArray(h.PodAnnotations))
		if h.Snapshotter != "" {
			line("  snapshotter = %s", quoteString(h.Snapshotter))
		}
		line("[%s.options]", table)
		line("  ConfigPath = %s", quoteString(h.ConfigPath))
		if h.Snapshotter != "" && version >= 3 {
			line("[%s]", dotted("plugins", criImages, "runtime_platforms", e.name))
			line("  snapshotter = %s", quoteString(h.Snapshotter))
		}
	}
	return b.String()
}

func stringArray(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quoteString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
