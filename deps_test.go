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
		"./runtime":    {"k8s.io/", "github.com/godbus/", "github.com/coreos/", "github.com/pelletier/", "google.golang.org/grpc"},
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
