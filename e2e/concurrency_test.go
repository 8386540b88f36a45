package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

// TestTwoInstallersAtOnce starts two installers on one node at the same
// moment: they serialise on the node's lock, and the result is one install
// (each handler registered once, the runtime restarted once, as by a
// single install).
func TestTwoInstallersAtOnce(t *testing.T) {
	forEachFlavour(t, func(t *testing.T, c *cluster, f testbed.Flavour) {
		uc := userConfigFor(f)
		n := c.startNode(t, f, testbed.WithFile(uc.path, []byte(uc.content), 0o644))
		before := hostFiles(t, n, false)
		since := time.Now()
		env := n.env("kata-installer", "KATA_ONCE=true")
		a := n.start(t, "kata-installer", env)
		b := n.start(t, "kata-installer", env)
		for _, p := range []*pod{a, b} {
			if err := p.wait(t, 3*time.Minute); err != nil {
				t.Fatalf("one of two concurrent installers failed: %v\n%s", err, p.out.String())
			}
		}
		// The lock held them apart: one of them planned against the other's
		// finished install, so it wrote nothing and restarted nothing.
		var noop int
		for _, p := range []*pod{a, b} {
			if strings.Contains(p.out.String(), "restart not needed") {
				noop++
			}
		}
		if noop != 1 {
			t.Errorf("%d of the two installers found the runtime up to date, want exactly 1:\n--- first\n%s\n--- second\n%s", noop, a.out.String(), b.out.String())
		}
		for _, h := range kataHandlers {
			if got := handlerTables(t, n, h); got != 1 {
				t.Errorf("handler %s is declared %d times in the runtime's config, want once", h, got)
			}
		}
		restarts := starts(t, n, n.RuntimeUnit(), since)
		if restarts != 1 {
			t.Errorf("%s started %d times for two concurrent installs, want 1 (as for one install)", n.RuntimeUnit(), restarts)
		}
		assertRuntime(t, n, true)
		c.waitLabel(t, n.Name(), kataLabel, "true", 10*time.Second)
		n.mustUninstall(t)
		assertSameFiles(t, before, afterUninstall(t, hostFiles(t, n, false)), "the uninstall after two concurrent installs")
		t.Logf("two concurrent installers: one install, %s started %d time(s)", n.RuntimeUnit(), restarts)
	})
}

// TestSeveralNodes installs on one node of each flavour at once against
// one API server, each node with its own labeler and installer, then takes
// Kata off all of them at once in the original order.
func TestSeveralNodes(t *testing.T) {
	testbed.Require(t)
	c := newCluster(t)
	type member struct {
		n         *node
		before    map[string]string
		labeler   *pod
		installer *pod
		runtime   string
	}
	var nodes []*member
	for _, f := range testbed.Flavours() {
		uc := userConfigFor(f)
		n := c.startNode(t, f, testbed.WithFile(uc.path, []byte(uc.content), 0o644))
		rt := "containerd"
		if f == testbed.CRIO {
			rt = "crio"
		}
		nodes = append(nodes, &member{n: n, before: hostFiles(t, n, false), runtime: rt})
	}
	start := time.Now()
	for _, m := range nodes {
		m.labeler = m.n.start(t, "kata-labeler", m.n.env("kata-labeler"))
		m.installer = m.n.start(t, "kata-installer", m.n.env("kata-installer", "KATA_DAEMONSET="))
	}
	// Waited for one after another: the installs run concurrently all the
	// same, so each time is when its node was seen labelled, at most.
	for _, m := range nodes {
		c.waitLabel(t, m.n.Name(), runtimeLabel, m.runtime, time.Minute)
		c.waitLabel(t, m.n.Name(), kataLabel, "true", 3*time.Minute)
		t.Logf("%s (%s): labelled %s=%s and %s=true by %s after the installers started", m.n.Name(), m.n.Flavour(), runtimeLabel, m.runtime, kataLabel, time.Since(start).Round(time.Millisecond))
	}
	for _, m := range nodes {
		assertRuntime(t, m.n, true)
		// Each node's events are its own: one start and one success each.
		var ok int
		for _, r := range c.reasons(t, m.n.Name()) {
			if r == "KataInstallSucceeded" {
				ok++
			}
		}
		if ok != 1 {
			t.Errorf("%s has %d KataInstallSucceeded events, want 1", m.n.Name(), ok)
		}
	}

	// Delete the DaemonSets: every installer uninstalls at once, then the
	// cleanup pods finish each node.
	for _, m := range nodes {
		m.installer.signal(syscall.SIGTERM)
		m.labeler.signal(syscall.SIGTERM)
	}
	for _, m := range nodes {
		if err := m.installer.wait(t, 3*time.Minute); err != nil {
			t.Fatalf("%s: installer exited with %v:\n%s", m.n.Name(), err, m.installer.out.String())
		}
		must(t, m.labeler.wait(t, 30*time.Second))
		c.waitLabel(t, m.n.Name(), kataLabel, "cleanup", 10*time.Second)
	}
	var cleanups []*pod
	for _, m := range nodes {
		cleanups = append(cleanups, m.n.start(t, "kata-cleanup", m.n.env("kata-cleanup", "KATA_ONCE=true")))
	}
	for i, p := range cleanups {
		if err := p.wait(t, time.Minute); err != nil {
			t.Errorf("%s: cleanup: %v\n%s", nodes[i].n.Name(), err, p.out.String())
		}
	}
	for _, m := range nodes {
		c.waitLabel(t, m.n.Name(), kataLabel, "", 10*time.Second)
		c.waitLabel(t, m.n.Name(), runtimeLabel, "", 10*time.Second)
		assertSameFiles(t, m.before, hostFiles(t, m.n, false), m.n.Name()+"'s uninstall")
		assertRuntime(t, m.n, false)
	}
	t.Logf("%d nodes installed, uninstalled and cleaned up concurrently", len(nodes))
}
