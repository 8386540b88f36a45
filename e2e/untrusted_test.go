package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

// TestUntrustedMode is the original annotation flow: on containerd 1.6,
// KATA_MODE=untrusted makes the runtime named "untrusted" (the one 1.x CRI
// gives pods annotated io.kubernetes.cri.untrusted-workload) the Kata
// shim with its config, in the daemon's live config. containerd 2.x and
// CRI-O have no such route: the installer refuses, pointing to
// RuntimeClass, and changes nothing.
func TestUntrustedMode(t *testing.T) {
	forEachFlavour(t, func(t *testing.T, c *cluster, f testbed.Flavour) {
		uc := userConfigFor(f)
		n := c.startNode(t, f, testbed.WithFile(uc.path, []byte(uc.content), 0o644))
		before := hostFiles(t, n, true)
		if f != testbed.Containerd16 {
			out, err := n.install(t, "KATA_MODE=untrusted")
			if err == nil {
				t.Fatalf("the installer accepted the untrusted mode on %s:\n%s", n.RuntimeVersion(), out)
			}
			if !strings.Contains(out, "--mode=runtimeclass") {
				t.Errorf("the refusal does not point to --mode=runtimeclass:\n%s", out)
			}
			assertSameFiles(t, before, hostFiles(t, n, true), "the refused untrusted install")
			assertNoPayload(t, n)
			assertFailedInstall(t, c, n)
			t.Logf("refused: %s", lastLine(out))
			return
		}
		n.mustInstall(t, "KATA_MODE=untrusted")
		info, err := n.CRIStatus(context.Background())
		must(t, err)
		var cfg struct {
			Containerd struct {
				Runtimes map[string]json.RawMessage `json:"runtimes"`
			} `json:"containerd"`
		}
		must(t, json.Unmarshal([]byte(info["config"]), &cfg))
		untrusted, ok := cfg.Containerd.Runtimes["untrusted"]
		if !ok {
			t.Fatalf("containerd's live config has no runtime named untrusted: %s", info["config"])
		}
		for _, want := range []string{"io.containerd.kata", "/opt/kata/bin/containerd-shim-kata-v2", "/opt/kata/share/defaults/kata-containers/runtimes/qemu/configuration-qemu.toml"} {
			if !strings.Contains(string(untrusted), want) {
				t.Errorf("the live untrusted runtime lacks %q: %s", want, untrusted)
			}
		}
		// runc stays the default for every other pod.
		if _, ok := cfg.Containerd.Runtimes["runc"]; !ok {
			t.Errorf("containerd's live config lost runc: %s", info["config"])
		}
		assertRuntime(t, n, true)
		t.Logf("live untrusted runtime: %s", untrusted)
		n.mustUninstall(t)
		assertSameFiles(t, stripMtimes(before), afterUninstall(t, hostFiles(t, n, false)), "the uninstall of the untrusted mode")
	})
}

func stripMtimes(files map[string]string) map[string]string {
	out := map[string]string{}
	for p, v := range files {
		v, _, _ = strings.Cut(v, "\x00mtime=")
		out[p] = v
	}
	return out
}
