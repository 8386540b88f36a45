package crio

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"
	"gotest.tools/v3/assert"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// TestEffectiveConfigWithRealCRIO asks the real CRI-O 1.34 what it makes
// of the drop-in directory before and after install: the same config plus
// exactly the Kata handlers.
func TestEffectiveConfigWithRealCRIO(t *testing.T) {
	testbed.Require(t)
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			host := makeHost(t, c.files, append(c.dirs, runtime.VariantCRIO.DropInDir()))
			confDir := filepath.Join(host, runtime.VariantCRIO.DropInDir())
			before := crioConfig(ctx, t, confDir)

			e := newEngine(t, host)
			s := spec(t, runtime.ModeRuntimeClass)
			plan, err := e.PlanInstall(context.Background(), s)
			assert.NilError(t, err)
			assert.NilError(t, e.Apply(ctx, plan))
			after := crioConfig(ctx, t, confDir)

			runtimes := after["crio"].(map[string]any)["runtime"].(map[string]any)["runtimes"].(map[string]any)
			for _, h := range s.Handlers {
				got, ok := runtimes[h.Name].(map[string]any)
				assert.Assert(t, ok, "CRI-O does not see handler %s", h.Name)
				assert.Equal(t, got["runtime_path"], h.ShimPath)
				assert.Equal(t, got["runtime_type"], "vm")
				assert.Equal(t, got["runtime_root"], "/run/vc")
				assert.Equal(t, got["runtime_config_path"], h.ConfigPath)
				assert.Equal(t, got["privileged_without_host_devices"], true)
				delete(runtimes, h.Name)
			}
			// crio config prints only what differs from its defaults: once
			// the handlers are there, the default runtime is printed too.
			beforeRuntime, _ := before["crio"].(map[string]any)["runtime"].(map[string]any)
			if _, listed := beforeRuntime["runtimes"]; !listed {
				def, _ := beforeRuntime["default_runtime"].(string)
				if def == "" {
					def = "crun"
				}
				assert.Check(t, cmp.Equal(keys(runtimes), []string{def}), "CRI-O lost or gained runtimes: %v", keys(runtimes))
				delete(after["crio"].(map[string]any)["runtime"].(map[string]any), "runtimes")
			}
			if d := cmp.Diff(before, after); d != "" {
				t.Errorf("installing changed CRI-O's effective config beyond the Kata handlers (-before +after):\n%s", d)
			}
		})
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func crioConfig(ctx context.Context, t *testing.T, confDir string) map[string]any {
	t.Helper()
	out, err := testbed.CRIOConfig(ctx, confDir)
	assert.NilError(t, err)
	var tree map[string]any
	assert.NilError(t, toml.Unmarshal(out, &tree), "crio config output:\n%s", out)
	return tree
}
