package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

// TestUpgrade installs payload v1, then v2 (changed files, one file more,
// one less), then uninstalls: while v2 is installed its files are what the
// node has, and the host ends byte-identical to the start.
func TestUpgrade(t *testing.T) {
	forEachFlavour(t, func(t *testing.T, c *cluster, f testbed.Flavour) {
		uc := userConfigFor(f)
		n := c.startNode(t, f, testbed.WithFile(uc.path, []byte(uc.content), 0o644))
		unit := n.RuntimeUnit()
		before := hostFiles(t, n, false)
		n.mustInstall(t)
		if got := readNode(t, n, "/opt/kata/bin/containerd-shim-kata-v2"); !strings.Contains(got, "v1") {
			t.Fatalf("v1 install: shim is %q", got)
		}

		payload := n.HostPath(payloadDir)
		must(t, os.RemoveAll(payload))
		writePayload(t, payload, "v2")
		must(t, os.Remove(payload+"/opt/kata/share/kata-containers/vmlinux.container"))
		must(t, os.WriteFile(payload+"/opt/kata/share/kata-containers/vmlinux-v2.container", []byte("kernel v2\n"), 0o644))
		since := time.Now()
		n.mustInstall(t)
		for p, want := range map[string]string{
			"/opt/kata/bin/containerd-shim-kata-v2":                "#!/bin/sh\necho kata shim v2\n",
			"/opt/kata/runtime-rs/bin/containerd-shim-kata-v2":     "#!/bin/sh\necho kata runtime-rs shim v2\n",
			"/opt/kata/share/kata-containers/kata-containers.img":  strings.Repeat("image v2\n", 4096),
			"/opt/kata/share/kata-containers/vmlinux-v2.container": "kernel v2\n",
		} {
			if got := readNode(t, n, p); got != want {
				t.Errorf("after the upgrade %s is %.40q, want %.40q", p, got, want)
			}
		}
		if got := readNode(t, n, "/opt/kata/share/defaults/kata-containers/runtimes/qemu/configuration-qemu.toml"); !strings.Contains(got, "# v2") {
			t.Errorf("after the upgrade the qemu config is not v2's:\n%s", got)
		}
		if _, err := os.Stat(n.HostPath("/opt/kata/share/kata-containers/vmlinux.container")); !os.IsNotExist(err) {
			t.Errorf("the file v2 dropped is still installed (err %v)", err)
		}
		restarts := starts(t, n, unit, since)
		assertRuntime(t, n, true)
		c.waitLabel(t, n.Name(), kataLabel, "true", 10*time.Second)

		n.mustUninstall(t)
		assertSameFiles(t, before, afterUninstall(t, hostFiles(t, n, false)), "the uninstall after the upgrade")
		assertRuntime(t, n, false)
		t.Logf("upgrade v1 -> v2: files replaced, %s started %d time(s) for it (config unchanged); uninstall left the host as it was", unit, restarts)
	})
}

func readNode(t *testing.T, n *node, p string) string {
	t.Helper()
	data, err := os.ReadFile(n.HostPath(p))
	if err != nil {
		t.Errorf("read %s on the node: %v", p, err)
	}
	return string(data)
}
