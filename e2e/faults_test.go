package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

// badConfig is a host config the installer must refuse, and where.
type badConfig struct {
	name    string
	path    string
	content string
	line    int // the line the message must name
}

func badConfigsFor(f testbed.Flavour) []badConfig {
	if f == testbed.CRIO {
		return []badConfig{{name: "malformed-dropin", path: "/etc/crio/crio.conf.d/20-broken.conf", line: 3,
			content: "# A drop-in someone broke.\n[crio.image]\npause_image = = \"registry.example.com/pause:3.10\"\n"}}
	}
	uc := userConfigFor(f)
	lines := strings.Split(uc.content, "\n")
	// Break the line after the first table header: a stray '=' in a value.
	broken := slices.Clone(lines)
	at := 0
	for i, l := range broken {
		if strings.Contains(l, "=") && i > 2 {
			broken[i] = strings.Replace(l, "=", "= =", 1)
			at = i + 1
			break
		}
	}
	return []badConfig{
		{name: "malformed", path: uc.path, content: strings.Join(broken, "\n"), line: at},
		{name: "version-7", path: uc.path, line: 1,
			content: "version = 7\n\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"},
	}
}

// TestBadHostConfig: a host config the installer cannot edit (malformed
// TOML, a containerd config version it does not know) fails the install
// before anything is written: the message names the file and line, the
// host is unchanged, the Node has a failure event and no kata label.
func TestBadHostConfig(t *testing.T) {
	forEachFlavour(t, func(t *testing.T, c *cluster, f testbed.Flavour) {
		uc := userConfigFor(f)
		n := c.startNode(t, f, testbed.WithFile(uc.path, []byte(uc.content), 0o644))
		for _, bc := range badConfigsFor(f) {
			t.Run(bc.name, func(t *testing.T) {
				// The runtime is running on its good config; the file is
				// broken afterwards, as an admin's edit would be. The
				// runtime must not be restarted onto it.
				must(t, os.MkdirAll(filepath.Dir(n.HostPath(bc.path)), 0o755))
				must(t, os.WriteFile(n.HostPath(bc.path), []byte(bc.content), 0o644))
				before := hostFiles(t, n, true)
				since := time.Now()
				out, err := n.install(t)
				if err == nil {
					t.Fatalf("the installer accepted %s:\n%s\n%s", bc.path, bc.content, out)
				}
				where := fmt.Sprintf("%s:%d", bc.path, bc.line)
				if !strings.Contains(out, where) {
					t.Errorf("the installer's message does not name %s:\n%s", where, out)
				}
				assertSameFiles(t, before, hostFiles(t, n, true), "the refused install")
				assertNoPayload(t, n)
				assertFailedInstall(t, c, n)
				if got := starts(t, n, n.RuntimeUnit(), since); got != 0 {
					t.Errorf("the refused install started %s %d times", n.RuntimeUnit(), got)
				}
				t.Logf("refused, host unchanged, no restart: %s", lastLine(out))
				if bc.path == uc.path {
					must(t, os.WriteFile(n.HostPath(bc.path), []byte(uc.content), 0o644))
				} else {
					must(t, os.Remove(n.HostPath(bc.path)))
				}
			})
		}
	})
}

// lastLine is the command's error message: from its "error: " line on
// (a TOML error continues with the offending line and a caret), else its
// final line.
func lastLine(out string) string {
	if i := strings.LastIndex(out, "\nerror: "); i >= 0 {
		return strings.TrimSpace(out[i+1:])
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// refuseKata is a systemd drop-in that makes the runtime fail to start
// while its config registers the Kata shim: a runtime that will not start
// with the new config, whatever the reason.
func refuseKata(f testbed.Flavour) testbed.NodeOption {
	dir := "/etc/containerd"
	if f == testbed.CRIO {
		dir = "/etc/crio"
	}
	unit := f.RuntimeUnit()
	dropin := fmt.Sprintf("[Service]\nExecStartPre=/bin/sh -c 'if grep -rqsF /opt/kata/ %s; then echo refusing a config that names Kata >&2; exit 1; fi'\n", dir)
	return testbed.WithFile("/etc/systemd/system/"+unit+".d/50-refuse-kata.conf", []byte(dropin), 0o644)
}

// TestRuntimeRefusesConfig: the runtime does not come up with the new
// config, so the installer puts the previous config back, restarts the
// runtime on it, and fails without labelling the node. On CRI-O, also the
// real case of a handler whose shim binary is missing: CRI-O starts and
// skips the handler, which only the verification notices.
func TestRuntimeRefusesConfig(t *testing.T) {
	forEachFlavour(t, func(t *testing.T, c *cluster, f testbed.Flavour) {
		t.Run("runtime-fails-to-start", func(t *testing.T) {
			uc := userConfigFor(f)
			n := c.startNode(t, f, testbed.WithFile(uc.path, []byte(uc.content), 0o644), refuseKata(f))
			refusedRollback(t, c, n)
		})
		if f != testbed.CRIO {
			return
		}
		t.Run("shim-binary-missing", func(t *testing.T) {
			uc := userConfigFor(f)
			n := c.startNode(t, f, testbed.WithFile(uc.path, []byte(uc.content), 0o644))
			// The runtime-rs shim's config stays (the installer refuses a
			// handler whose config the payload lacks); only its binary goes.
			must(t, os.Remove(n.HostPath(payloadDir+"/opt/kata/runtime-rs/bin/containerd-shim-kata-v2")))
			refusedRollback(t, c, n, "KATA_VERIFY_TIMEOUT=5s")
		})
	})
}

func refusedRollback(t *testing.T, c *cluster, n *node, extra ...string) {
	t.Helper()
	unit := n.RuntimeUnit()
	before := hostFiles(t, n, false)
	since := time.Now()
	out, err := n.install(t, extra...)
	took := time.Since(since)
	if err == nil {
		t.Fatalf("the install succeeded on a runtime that refuses it:\n%s", out)
	}
	for _, want := range []string{"runtime restarted on its previous config", "the runtime answers CRI again on its previous config"} {
		if !strings.Contains(out, want) {
			t.Errorf("the installer did not report %q:\n%s", want, out)
		}
	}
	assertSameFiles(t, before, hostFiles(t, n, false), "the rolled-back install")
	assertNoPayload(t, n)
	assertRuntime(t, n, false)
	assertFailedInstall(t, c, n)
	restarts := starts(t, n, unit, since)
	if restarts < 1 {
		t.Errorf("%s did not start again after the rollback", unit)
	}
	// The runtime stays up on the old config: nothing (systemd's Restart=,
	// a late job) takes it down again a moment later.
	time.Sleep(time.Second)
	assertRuntime(t, n, false)
	t.Logf("rolled back in %s, %s started %d times; %s", took.Round(time.Millisecond), unit, restarts, lastLine(out))
}
