package nodelabel_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps client-go's typed clientset (and with it the
// scheme of every API group) out of the package: an importer such as the
// labeler would pay for it in start-up time and resident memory.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/kata-deploy/kata-deploy/nodelabel").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	// rbac/v1 only for the PolicyRule type the rule functions return.
	allowedAPI := map[string]bool{"k8s.io/api/core/v1": true, "k8s.io/api/apps/v1": true, "k8s.io/api/rbac/v1": true}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(dep, "k8s.io/client-go/kubernetes"):
			t.Errorf("nodelabel depends on %s", dep)
		case strings.HasPrefix(dep, "k8s.io/api/") && !allowedAPI[dep]:
			t.Errorf("nodelabel depends on API group %s", dep)
		}
	}
}
