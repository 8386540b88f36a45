package katadeploy_test

import (
	"os/exec"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
)

// TestDependencyLayers keeps the packages honest about what they pull into
// an importer's build: the vocabulary stays light, and the config engines
// talk to neither the API server nor D-Bus.
func TestDependencyLayers(t *testing.T) {
	forbidden := map[string][]string{
		"./containerd": {"k8s.io/", "github.com/godbus/", "github.com/coreos/", "google.golang.org/grpc"},
		"./crio":       {"k8s.io/", "github.com/godbus/", "github.com/coreos/", "google.golang.org/grpc"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
		assert.NilError(t, err, string(out))
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range bad {
				assert.Check(t, !strings.HasPrefix(dep, b), "%s depends on %s", pkg, dep)
			}
		}
	}
	// runtime: the standard library and one small diff library, nothing else.
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./runtime").CombinedOutput()
	assert.NilError(t, err, string(out))
	for _, dep := range strings.Fields(string(out)) {
		ok := strings.HasPrefix(dep, "github.com/kata-deploy/kata-deploy/runtime") || strings.HasPrefix(dep, "github.com/aymanbagabas/go-udiff")
		assert.Check(t, ok, "runtime depends on %s", dep)
	}
}

// layerOf places a package of the module in the tree's layers, lowest
// first: runtime's vocabulary (its cri package, which speaks gRPC, sits
// with the public packages), the internal helpers, the public packages,
// the commands' composition (cmd/internal), the commands, and what sits
// beside the product (manifests, hack tools, e2e). Test infrastructure is
// its own layer, which only tests may import. A package the table does not
// place fails the test, so each new package is placed on purpose.
func layerOf(rel string) (rank int, testInfra, ok bool) {
	under := func(p string) bool { return rel == p || strings.HasPrefix(rel, p+"/") }
	switch {
	case under("runtime/cri"):
		return 2, false, true // a public package over internal/cri
	case under("runtime"):
		return 0, false, true
	case under("internal/testing"):
		return 2, true, true
	case under("internal"):
		return 1, false, true
	case under("containerd"), under("crio"), under("artifacts"), under("nodelabel"), under("systemd"):
		return 2, false, true
	case under("cmd/internal"):
		return 3, false, true
	case under("cmd"):
		return 4, false, true
	case rel == "", under("deploy"), under("hack"), under("e2e"):
		return 5, false, true
	}
	return 0, false, false
}

// TestLayers keeps the import graph pointing down: no package imports one
// in a higher layer, and no product code imports test infrastructure.
func TestLayers(t *testing.T) {
	const module = "github.com/kata-deploy/kata-deploy"
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...").CombinedOutput()
	assert.NilError(t, err, string(out))
	rel := func(p string) (string, bool) {
		if p == module {
			return "", true
		}
		r, ok := strings.CutPrefix(p, module+"/")
		return r, ok
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		from, _ := rel(f[0])
		fromRank, fromInfra, ok := layerOf(from)
		if !assert.Check(t, ok, "package %s is in no layer: place it in layerOf", f[0]) {
			continue
		}
		for _, imp := range f[1:] {
			to, ours := rel(imp)
			if !ours {
				continue
			}
			toRank, toInfra, ok := layerOf(to)
			if !assert.Check(t, ok, "package %s is in no layer: place it in layerOf", imp) {
				continue
			}
			assert.Check(t, toRank <= fromRank, "%s (layer %d) imports %s (layer %d): an arrow back up", f[0], fromRank, imp, toRank)
			assert.Check(t, !toInfra || fromInfra, "%s imports test infrastructure %s outside its tests", f[0], imp)
		}
	}
}
