package containerd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/containerd"
	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
)

// planAndApply plans and applies with e until the plan is not stale: a
// plan made while another install was being applied is refused, and the
// caller plans again.
func planAndApply(ctx context.Context, e *containerd.Engine, plan func() (*kataruntime.Plan, error)) error {
	for range 20 {
		p, err := plan()
		if err != nil {
			return err
		}
		err = e.Apply(ctx, p)
		if !errors.Is(err, kataruntime.ErrStalePlan) {
			return err
		}
	}
	return errors.New("still stale after 20 plans")
}

// Two installs under different names applied at once both land: each
// apply holds the engines' lock while it checks and writes, so one never
// overwrites the imports entry the other just added (both used to return
// nil with one entry lost). Uninstalling both, at once too, leaves the
// host byte for byte as it was: no state directory of either outlives
// them, whichever goes first.
func TestConcurrentInstallsUnderTwoNames(t *testing.T) {
	ctx := context.Background()
	def, err := os.ReadFile("../testdata/containerd/containerd-2.2-default.toml")
	assert.NilError(t, err)
	for _, cfg := range []struct {
		name    string
		config  []byte
		imports bool // the config gains an imports entry per install
	}{
		{name: "imports added", config: []byte("version = 3\n"), imports: true},
		{name: "2.2 default", config: def},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			rounds := 30
			if testing.Short() {
				rounds = 5
			}
			for round := range rounds {
				host := hosttest.Write(t, []string{"/etc"}, map[string][]byte{"/etc/containerd/config.toml": cfg.config})
				before := hosttest.Snapshot(t, host)
				names := []string{"kata-deploy", "kata-deploy-canary"}
				specs := []kataruntime.Spec{spec(t), spec(t, kataruntime.WithSuffix("canary"))}
				engines := make([]*containerd.Engine, 2)
				for i, n := range names {
					engines[i], err = containerd.New(host, kataruntime.VariantContainerd, v22(), containerd.WithName(n))
					assert.NilError(t, err)
				}
				both := func(do func(i int) error) []error {
					errs := make([]error, 2)
					var wg sync.WaitGroup
					for i := range 2 {
						wg.Go(func() { errs[i] = do(i) })
					}
					wg.Wait()
					return errs
				}
				errs := both(func(i int) error {
					return planAndApply(ctx, engines[i], func() (*kataruntime.Plan, error) { return engines[i].PlanInstall(ctx, specs[i]) })
				})
				for i := range 2 {
					assert.NilError(t, errs[i], "round %d, install %s", round, names[i])
				}
				main, err := os.ReadFile(filepath.Join(host, "etc/containerd/config.toml"))
				assert.NilError(t, err)
				for _, n := range names {
					dropIn := "/etc/containerd/" + n + ".toml"
					if !cfg.imports {
						dropIn = "/etc/containerd/conf.d/" + n + ".toml"
					} else {
						assert.Check(t, is.Contains(string(main), `"`+dropIn+`"`), "round %d: the imports entry of %s was lost:\n%s", round, n, main)
					}
					_, err := os.Stat(filepath.Join(host, dropIn))
					assert.Check(t, err, "round %d", round)
				}

				errs = both(func(i int) error {
					return planAndApply(ctx, engines[i], func() (*kataruntime.Plan, error) { return engines[i].PlanUninstall(ctx) })
				})
				for i := range 2 {
					assert.NilError(t, errs[i], "round %d, uninstall %s", round, names[i])
				}
				after := hosttest.Snapshot(t, host)
				if !assert.Check(t, is.DeepEqual(after, before), "round %d: the host is not as it was", round) {
					var left []string
					for p := range after {
						if _, ok := before[p]; !ok {
							left = append(left, p)
						}
					}
					t.Logf("left: %s", strings.Join(left, ", "))
					return
				}
			}
		})
	}
}

// Installs applied one after the other, and uninstalled first-in
// first-out, also leave nothing: the second journal takes over the state
// directories the first one made (they used to outlive both).
func TestSequentialInstallsLeaveNoStateDirs(t *testing.T) {
	ctx := context.Background()
	def, err := os.ReadFile("../testdata/containerd/containerd-2.2-default.toml")
	assert.NilError(t, err)
	host := hosttest.Write(t, []string{"/etc"}, map[string][]byte{"/etc/containerd/config.toml": def})
	before := hosttest.Snapshot(t, host)
	first, err := containerd.New(host, kataruntime.VariantContainerd, v22())
	assert.NilError(t, err)
	second, err := containerd.New(host, kataruntime.VariantContainerd, v22(), containerd.WithName("kata-deploy-canary"))
	assert.NilError(t, err)
	for _, x := range []struct {
		e *containerd.Engine
		s kataruntime.Spec
	}{{first, spec(t)}, {second, spec(t, kataruntime.WithSuffix("canary"))}} {
		p, err := x.e.PlanInstall(ctx, x.s)
		assert.NilError(t, err)
		assert.NilError(t, x.e.Apply(ctx, p))
	}
	for _, e := range []*containerd.Engine{first, second} {
		p, err := e.PlanUninstall(ctx)
		assert.NilError(t, err)
		assert.NilError(t, e.Apply(ctx, p))
	}
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
}
