package e2e

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

// kataHandlers are the handlers an install of e2eShims registers.
var kataHandlers = []string{"kata", "kata-qemu", "kata-dragonball"}

// install runs the installer once to completion (KATA_ONCE), as a re-run
// or a one-shot install would; extra environment entries override n.env's.
func (n *node) install(t *testing.T, extra ...string) (string, error) {
	t.Helper()
	return n.run(t, "kata-installer", n.env("kata-installer", append([]string{"KATA_ONCE=true"}, extra...)...))
}

// uninstall runs "kata-installer uninstall" to completion.
func (n *node) uninstall(t *testing.T, extra ...string) (string, error) {
	t.Helper()
	return n.run(t, "kata-installer", n.env("kata-installer", extra...), "uninstall")
}

// mustInstall and mustUninstall fail the test, with the command's output,
// when the command fails.
func (n *node) mustInstall(t *testing.T, extra ...string) string {
	t.Helper()
	out, err := n.install(t, extra...)
	if err != nil {
		t.Fatalf("install on %s: %v\n%s", n.Name(), err, out)
	}
	return out
}

func (n *node) mustUninstall(t *testing.T, extra ...string) string {
	t.Helper()
	out, err := n.uninstall(t, extra...)
	if err != nil {
		t.Fatalf("uninstall on %s: %v\n%s", n.Name(), err, out)
	}
	return out
}

// label returns the node's label key and whether it is set.
func (c *cluster) label(t *testing.T, nodeName, key string) (string, bool) {
	t.Helper()
	obj, err := c.admin.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
	must(t, err)
	v, ok := obj.Labels[key]
	return v, ok
}

// reasons lists the reasons of the events on a node.
func (c *cluster) reasons(t *testing.T, nodeName string) []string {
	t.Helper()
	var out []string
	for _, e := range c.events(t, nodeName) {
		out = append(out, e.Reason)
	}
	return out
}

// assertFailedInstall checks what every failed install must leave: no
// kata-runtime label and a failure event on the Node.
func assertFailedInstall(t *testing.T, c *cluster, n *node) {
	t.Helper()
	if v, ok := c.label(t, n.Name(), kataLabel); ok {
		t.Errorf("the failed install left the node labelled %s=%s", kataLabel, v)
	}
	if r := c.reasons(t, n.Name()); !slices.Contains(r, "KataInstallFailed") {
		t.Errorf("no KataInstallFailed event on the Node; events: %v", r)
	}
}

// assertRuntime checks that the runtime unit is active and answers CRI,
// and that it serves every Kata handler (kata true) or none (kata false).
func assertRuntime(t *testing.T, n *node, kata bool) {
	t.Helper()
	ctx := context.Background()
	if st, err := n.UnitActiveState(ctx, n.RuntimeUnit()); err != nil || st != "active" {
		t.Errorf("%s is %q (err %v), want active", n.RuntimeUnit(), st, err)
	}
	handlers, err := n.RuntimeHandlers(ctx)
	if err != nil {
		t.Errorf("the runtime does not answer CRI: %v", err)
		return
	}
	for _, h := range kataHandlers {
		if slices.Contains(handlers, h) != kata {
			t.Errorf("the runtime serves %v; want Kata handlers served: %v", handlers, kata)
			return
		}
	}
}

// assertNoPayload checks /opt/kata is gone from the node.
func assertNoPayload(t *testing.T, n *node) {
	t.Helper()
	if _, err := os.Stat(n.HostPath("/opt/kata")); !os.IsNotExist(err) {
		t.Errorf("/opt/kata exists on the node (err %v)", err)
	}
}

// handlerTables counts, over the runtime's config files, the tables that
// declare handler h: an install registers each handler exactly once.
func handlerTables(t *testing.T, n *node, h string) int {
	t.Helper()
	re := regexp.MustCompile(`(?m)^\s*\[[^\]]*runtimes\.["']?` + regexp.QuoteMeta(h) + `["']?\]\s*$`)
	count := 0
	for p, data := range hostFiles(t, n, false) {
		if strings.HasPrefix(p, "/etc/") {
			count += len(re.FindAllString(data, -1))
		}
	}
	return count
}

// forEachFlavour runs fn in one subtest per flavour, on one shared control
// plane: a control plane per node would double the suite's time.
func forEachFlavour(t *testing.T, fn func(t *testing.T, c *cluster, f testbed.Flavour)) {
	t.Helper()
	testbed.Require(t)
	c := newCluster(t)
	for _, f := range testbed.Flavours() {
		t.Run(string(f), func(t *testing.T) { fn(t, c, f) })
	}
}

// timed runs fn and returns how long it took.
func timed(fn func()) time.Duration {
	start := time.Now()
	fn()
	return time.Since(start)
}
