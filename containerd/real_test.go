package containerd

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"
	"gotest.tools/v3/assert"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// TestEffectiveConfigWithRealContainerd installs each golden case and asks
// the real containerd of the matching release what it makes of the result:
// the effective config must be the one it had before, plus exactly the Kata
// runtimes, each with the right shim and Kata config.
func TestEffectiveConfigWithRealContainerd(t *testing.T) {
	testbed.Require(t)
	for _, c := range goldenCases() {
		flavour := testbed.Containerd2
		if !strings.HasPrefix(c.version, "2.") {
			flavour = testbed.Containerd16
		}
		if c.variant == runtime.VariantK0s || c.variant == runtime.VariantMicroK8s || c.version == "2.3.7" {
			// k0s and microk8s render containerd's config themselves; and
			// no 2.3 binary is built here.
			continue
		}
		if c.mode == runtime.ModeUntrusted {
			continue // TestUntrustedWithRealContainerd
		}
		if flavour == testbed.Containerd16 && slices.Contains(c.shims, "fc") {
			// A per-runtime snapshotter needs containerd 1.7, and no 1.7
			// binary is built here: 1.6 would ignore the key.
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			host := makeHost(t, c)
			e := newEngine(t, host, c)
			before := dumpBefore(ctx, t, flavour, host, e)

			spec := specFor(t, c)
			plan, err := e.PlanInstall(context.Background(), spec)
			assert.NilError(t, err)
			assert.NilError(t, e.Apply(ctx, plan))
			after := dump(ctx, t, flavour, host, e.ConfigPath())

			dropZeroOptions(runtimesOf(t, before))
			runtimes := runtimesOf(t, after)
			dropZeroOptions(runtimes)
			for _, h := range spec.Handlers {
				got, ok := runtimes[h.Name].(map[string]any)
				assert.Assert(t, ok, "containerd does not see runtime %s; runtimes: %v", h.Name, keys(runtimes))
				assert.Equal(t, got["runtime_type"], h.RuntimeType)
				assert.Equal(t, got["runtime_path"], h.ShimPath)
				assert.Equal(t, got["privileged_without_host_devices"], true)
				opts, _ := got["options"].(map[string]any)
				assert.Equal(t, opts["ConfigPath"], h.ConfigPath)
				delete(runtimes, h.Name)
				if h.Snapshotter != "" {
					// Both places containerd 2.x reads: the runtime's own
					// key, and the image service's runtime platform (which
					// decides the snapshotter images are unpacked into).
					assert.Equal(t, got["snapshotter"], h.Snapshotter)
					platforms := lookupMap(after, "plugins", criImages, "runtime_platforms")
					assert.DeepEqual(t, platforms[h.Name], map[string]any{"platform": "", "snapshotter": h.Snapshotter})
					delete(platforms, h.Name)
					if len(platforms) == 0 && lookupMap(before, "plugins", criImages, "runtime_platforms") == nil {
						delete(lookupMap(after, "plugins", criImages), "runtime_platforms")
					}
				}
			}
			// What is left must be what containerd had before; imports
			// naturally list the drop-in now.
			delete(after, "imports")
			delete(before, "imports")
			if d := cmp.Diff(before, after); d != "" {
				t.Errorf("installing changed containerd's effective config beyond the Kata runtimes (-before +after):\n%s", d)
			}

			undo, err := e.PlanUninstall(context.Background())
			assert.NilError(t, err)
			assert.NilError(t, e.Apply(ctx, undo))
		})
	}
}

// TestUntrustedWithRealContainerd checks the original annotation flow:
// containerd 1.6 must see Kata as the "untrusted" runtime, which it uses
// for pods annotated io.kubernetes.cri.untrusted-workload: "true".
func TestUntrustedWithRealContainerd(t *testing.T) {
	testbed.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := hostCase{variant: runtime.VariantContainerd, version: "1.6.20", mode: runtime.ModeUntrusted,
		files: map[string]string{"/etc/containerd/config.toml": configs + "containerd-1.6-custom.toml"}}
	host := makeHost(t, c)
	e := newEngine(t, host, c)
	spec := specFor(t, c)
	plan, err := e.PlanInstall(context.Background(), spec)
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, plan))
	runtimes := runtimesOf(t, dump(ctx, t, testbed.Containerd16, host, e.ConfigPath()))
	u, ok := runtimes["untrusted"].(map[string]any)
	assert.Assert(t, ok, "no untrusted runtime; runtimes: %v", keys(runtimes))
	assert.Equal(t, u["runtime_path"], spec.Handlers[0].ShimPath)
	opts, _ := u["options"].(map[string]any)
	assert.Equal(t, opts["ConfigPath"], spec.Handlers[0].ConfigPath)
}

// dumpBefore is the effective config before install. With no config file
// containerd runs on its defaults, which a file naming only the version
// the engine would write shows too.
func dumpBefore(ctx context.Context, t *testing.T, flavour testbed.Flavour, host string, e *Engine) map[string]any {
	t.Helper()
	if _, err := os.Stat(filepath.Join(host, e.ConfigPath())); err == nil {
		return dump(ctx, t, flavour, host, e.ConfigPath())
	}
	defaults := t.TempDir()
	p := filepath.Join(defaults, e.ConfigPath())
	assert.NilError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	assert.NilError(t, os.WriteFile(p, []byte(fmt.Sprintf("version = %d\n", e.dropInVersion())), 0o644))
	return dump(ctx, t, flavour, defaults, e.ConfigPath())
}

func dump(ctx context.Context, t *testing.T, flavour testbed.Flavour, host, config string) map[string]any {
	t.Helper()
	out, err := testbed.ContainerdConfigDump(ctx, flavour, host, path.Clean(config))
	assert.NilError(t, err)
	var tree map[string]any
	assert.NilError(t, toml.Unmarshal(out, &tree), "config dump output:\n%s", out)
	return tree
}

// runtimesOf returns the CRI runtimes table of a config dump, whichever
// version it is in.
func runtimesOf(t *testing.T, tree map[string]any) map[string]any {
	t.Helper()
	plugins, _ := tree["plugins"].(map[string]any)
	for _, id := range []string{criRuntime, criV2} {
		cri, ok := plugins[id].(map[string]any)
		if !ok {
			continue
		}
		ctr, _ := cri["containerd"].(map[string]any)
		if r, ok := ctr["runtimes"].(map[string]any); ok {
			return r
		}
	}
	t.Fatalf("config dump has no CRI runtimes table")
	return nil
}

// dropZeroOptions removes runtime options that only restate zero values:
// containerd 1.6 shows its default runc with every option at its zero
// value, and a restated runc with none; the shim sees the same either way.
func dropZeroOptions(runtimes map[string]any) {
	for _, r := range runtimes {
		rt, _ := r.(map[string]any)
		opts, _ := rt["options"].(map[string]any)
		for k, v := range opts {
			switch v {
			case "", int64(0), false:
				delete(opts, k)
			}
		}
	}
}

func lookupMap(tree map[string]any, keys ...string) map[string]any {
	cur := tree
	for _, k := range keys {
		next, ok := cur[k].(map[string]any)
		if !ok {
			return nil
		}
		cur = next
	}
	return cur
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
