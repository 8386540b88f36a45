package containerd

import (
	"fmt"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// Plugin IDs that hold the CRI settings, per config version (see
// configVersions).
const (
	criV1      = "cri"
	criV2      = "io.containerd.grpc.v1.cri"
	criRuntime = "io.containerd.cri.v1.runtime"
	criImages  = "io.containerd.cri.v1.images"
)

// configVersion is what the engine needs to know about one containerd
// config version. Every decision on a config version, or on which config
// versions a containerd release reads, comes from this one table, as
// containerd keeps its own config migrations in one table.
type configVersion struct {
	version int
	// criPlugin is the plugin whose table holds the CRI runtimes.
	criPlugin string
	// imagesPlugin is the plugin that holds the image service's settings
	// (among them runtime_platforms, which carry a runtime's
	// snapshotter), or "" where the runtime plugin holds them.
	imagesPlugin string
	// firstReader is the first containerd release that reads the version.
	firstReader runtime.Version
	// lastDefault is the last release whose `containerd config default`
	// writes the version, zero while it is the current default.
	lastDefault runtime.Version
	// distroDropIns is the drop-in directory beside k3s's and rke2's
	// rendered config of this version, which their templates import.
	distroDropIns string
}

// configVersions lists the containerd config versions, oldest first.
func configVersions() []configVersion {
	return []configVersion{
		// Every release reads version 1 (zero firstReader).
		{version: 1, criPlugin: criV1, lastDefault: runtime.Version{Major: 1, Minor: 2}, distroDropIns: "config.toml.d"},
		{version: 2, criPlugin: criV2, firstReader: runtime.Version{Major: 1, Minor: 3}, lastDefault: runtime.Version{Major: 1, Minor: 7}, distroDropIns: "config.toml.d"},
		{version: 3, criPlugin: criRuntime, imagesPlugin: criImages, firstReader: runtime.Version{Major: 2, Minor: 0}, lastDefault: runtime.Version{Major: 2, Minor: 2}, distroDropIns: "config-v3.toml.d"},
		// Version 4 (containerd 2.3) moved only server settings; the CRI
		// tables are those of version 3.
		{version: 4, criPlugin: criRuntime, imagesPlugin: criImages, firstReader: runtime.Version{Major: 2, Minor: 3}, distroDropIns: "config-v3.toml.d"},
	}
}

// lookupVersion returns the table's row for a config version that
// readVersion accepted.
func lookupVersion(version int) configVersion {
	for _, cv := range configVersions() {
		if cv.version == version {
			return cv
		}
	}
	panic(fmt.Sprintf("containerd: config version %d is not in the table", version))
}

// knownVersions returns the oldest and the newest config version known.
func knownVersions() (oldest, newest int) {
	all := configVersions()
	return all[0].version, all[len(all)-1].version
}

// newestReadable returns the newest config version that containerd
// release v reads (older ones it migrates on load).
func newestReadable(v runtime.Version) int {
	newest := 0
	for _, cv := range configVersions() {
		if v.Compare(cv.firstReader) >= 0 {
			newest = cv.version
		}
	}
	return newest
}

// sameCRILayout reports whether two config versions keep the CRI settings
// under the same plugins.
func (cv configVersion) sameCRILayout(o configVersion) bool {
	return cv.criPlugin == o.criPlugin && cv.imagesPlugin == o.imagesPlugin
}

// criPlugin returns the plugin ID whose table holds the runtimes.
func criPlugin(version int) string { return lookupVersion(version).criPlugin }

// runtimesKeys is the key path of the runtimes table.
func runtimesKeys(version int) []string {
	return []string{"plugins", criPlugin(version), "containerd", "runtimes"}
}

// imagesPlugin returns the plugin that holds runtime_platforms, or "".
func imagesPlugin(version int) string { return lookupVersion(version).imagesPlugin }

// writeVersion is the config version for a file the engine writes with no
// main config to match, for containerd release v: the oldest version with
// the CRI layout of the newest one v reads, so that v reads it without
// migrating and a later version that changed nothing the engine writes
// (4 only moved server settings) is not needed.
func writeVersion(v runtime.Version) int {
	all := configVersions()
	newest := newestReadable(v)
	i := len(all) - 1
	for all[i].version != newest {
		i--
	}
	for i > 0 && all[i-1].sameCRILayout(all[i]) && v.Compare(all[i-1].firstReader) >= 0 {
		i--
	}
	return all[i].version
}

// What containerd releases do differently, each threshold decided here
// once.

// mergesImports reports whether release v merges an imported plugin table
// into the main one (2.1 and later) rather than replacing it whole.
func mergesImports(v runtime.Version) bool { return v.AtLeast(2, 1) }

// routesUntrusted reports whether release v still runs pods annotated
// io.kubernetes.cri.untrusted-workload with a runtime of their own
// (removed in 2.0).
func routesUntrusted(v runtime.Version) bool { return !v.AtLeast(2, 0) }

// replacesDefaultRuntimes reports whether release v drops its default
// runtimes as soon as a config names any runtime (1.x), so that runc must
// be restated.
func replacesDefaultRuntimes(v runtime.Version) bool { return !v.AtLeast(2, 0) }

// readsRuntimeOptions reports whether release v honours a runtime's
// snapshotter and runtime_path keys (1.7 added both; 1.6 reads them
// without error and ignores them).
func readsRuntimeOptions(v runtime.Version) bool { return v.AtLeast(1, 7) }

// platformSnapshotter reports whether release v takes the snapshotter a
// runtime's images are unpacked into from the image service's
// runtime_platforms, which only a config version with an images plugin
// can hold.
func platformSnapshotter(v runtime.Version) bool {
	return imagesPlugin(newestReadable(v)) != ""
}
