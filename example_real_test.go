package katadeploy_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/artifacts"
	"github.com/kata-deploy/kata-deploy/containerd"
	"github.com/kata-deploy/kata-deploy/crio"
	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
	"github.com/kata-deploy/kata-deploy/runtime/cri"
	"github.com/kata-deploy/kata-deploy/systemd"
)

// TestAnotherInstallerOnRealNodes runs the README's install, public
// packages only, on booted nodes with real systemd and real containerd 1.6,
// containerd 2.2 and CRI-O, from inside the node's namespaces with a PID
// namespace of its own (systemd's private socket takes no caller from
// outside the node), as another installer's process would be: it restarts the
// runtime, and the runtime itself serves every handler; run again, it
// does not restart it. Undone the same way, the node is byte for byte
// what it was.
func TestAnotherInstallerOnRealNodes(t *testing.T) {
	testbed.Require(t)
	self, err := os.Executable()
	assert.NilError(t, err)
	for _, f := range []testbed.Flavour{testbed.Containerd16, testbed.Containerd2, testbed.CRIO} {
		t.Run(string(f), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			n := testbed.StartNode(t, f)
			watched := []string{"/etc/containerd", "/etc/crio", "/usr/local/bin", "/opt", "/var/lib/kata-deploy"}
			before := snapshots(n, watched)
			started := func() time.Time {
				at, err := n.ActiveEnterTimestamp(ctx, n.RuntimeUnit())
				assert.NilError(t, err)
				return at
			}
			booted := started()
			inNode := func(step string) string {
				out, err := n.RunAsPodEnv(ctx, []string{"KATA_EXAMPLE_STEP=" + step, "KATA_EXAMPLE_RUNTIME=" + n.RuntimeVersion()},
					self, "-test.run", "^TestAnotherInstallerInNode$", "-test.v")
				assert.NilError(t, err, "%s in the node:\n%s", step, out)
				t.Logf("%s in the node:\n%s", step, out)
				return string(out)
			}

			out := inNode("install")
			assert.Check(t, is.Contains(out, "serves: kata kata-clh kata-qemu"))
			restarted := started()
			assert.Check(t, restarted.After(booted), "%s was not restarted", n.RuntimeUnit())
			// Again: nothing to write, and no restart.
			out = inNode("install")
			assert.Check(t, is.Contains(out, "serves: kata kata-clh kata-qemu"))
			assert.Check(t, is.Equal(started(), restarted), "%s restarted for nothing", n.RuntimeUnit())

			out = inNode("uninstall")
			assert.Check(t, is.Contains(out, "serves no Kata handler"))
			assert.Check(t, maps.Equal(before, snapshots(n, watched)), "the node differs from before the install")
		})
	}
}

// TestAnotherInstallerInNode is the half of TestAnotherInstallerOnRealNodes
// that runs inside a node, where the host root is "/".
func TestAnotherInstallerInNode(t *testing.T) {
	step, reported := os.Getenv("KATA_EXAMPLE_STEP"), os.Getenv("KATA_EXAMPLE_RUNTIME")
	if step == "" {
		t.Skip("runs inside a testbed node, started there by TestAnotherInstallerOnRealNodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt, err := kataruntime.ParseRuntime(reported)
	assert.NilError(t, err)
	hostFS, err := artifacts.HostFS("/")
	assert.NilError(t, err)
	variant, _, err := kataruntime.DetectVariant(hostFS, rt.Kind)
	assert.NilError(t, err)
	switch step {
	case "install":
		host, payload := exampleHost()
		defer os.RemoveAll(host)
		defer os.RemoveAll(payload)
		assert.NilError(t, install(ctx, "/", payload, reported, []string{"qemu", "clh"}))
	case "uninstall": // as install's rollback does it
		var engine kataruntime.ConfigEngine
		if variant.Kind() == kataruntime.CRIO {
			engine, err = crio.New("/", rt.Version)
		} else {
			engine, err = containerd.New("/", variant, rt.Version)
		}
		assert.NilError(t, err)
		back, err := engine.PlanUninstall(ctx)
		assert.NilError(t, err)
		assert.NilError(t, engine.Apply(ctx, back))
		sd, err := systemd.Dial(ctx, "/")
		assert.NilError(t, err)
		defer sd.Close()
		_, err = sd.Restart(ctx, variant.RuntimeUnit())
		assert.NilError(t, err)
		_, err = artifacts.Uninstall(ctx, "/")
		assert.NilError(t, err)
	}
	served, err := cri.Handlers(ctx, "/", variant)
	assert.NilError(t, err)
	var kata []string
	for _, h := range served {
		if strings.HasPrefix(h, "kata") {
			kata = append(kata, h)
		}
	}
	if len(kata) == 0 {
		fmt.Println("serves no Kata handler")
	} else {
		fmt.Println("serves:", strings.Join(kata, " "))
	}
}

// snapshots maps every path under the node's dirs to its type, mode and
// content.
func snapshots(n *testbed.Node, dirs []string) map[string]string {
	out := map[string]string{}
	for _, d := range dirs {
		for p, v := range snapshot(n.HostPath(d)) {
			out[filepath.Join(d, p)] = v
		}
	}
	return out
}
