package crio

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// A handler of the same name defined anywhere CRI-O reads its config from
// is refused: crio.conf, a drop-in sorting before or after the engine's,
// one whose name does not end in .conf, one in a subdirectory (CRI-O walks
// the directory and reads every file).
func TestRefusesHandlerDefinedInAnyDropIn(t *testing.T) {
	const table = "[crio.runtime.runtimes.kata-clh]\nruntime_path = \"/usr/bin/mine\"\n"
	for _, p := range []string{
		"/etc/crio/crio.conf",
		"/etc/crio/crio.conf.d/10-mine.conf",
		"/etc/crio/crio.conf.d/zz-mine.conf",
		"/etc/crio/crio.conf.d/mine.toml",
		"/etc/crio/crio.conf.d/sub/mine.conf",
	} {
		t.Run(p, func(t *testing.T) {
			host := hosttest.Write(t, []string{"/etc/crio/crio.conf.d"}, map[string][]byte{p: []byte(table)})
			before := hosttest.Snapshot(t, host)
			_, err := newEngine(t, host).PlanInstall(context.Background(), spec(t, runtime.ModeRuntimeClass))
			var ce *runtime.ConfigError
			assert.Assert(t, errors.As(err, &ce), "%v", err)
			assert.Check(t, is.Equal(ce.Path, p))
			assert.Check(t, is.Equal(ce.Key, "crio.runtime.runtimes.kata-clh"))
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
		})
	}
}

// A drop-in added, or crio.conf changed, after planning makes the plan
// stale: CRI-O would read a handler the plan never checked.
func TestPlanRefusedWhenAReadFileChanged(t *testing.T) {
	for _, c := range []struct{ name, file, path string }{
		{name: "drop-in added", file: "etc/crio/crio.conf.d/50-new.conf", path: "/etc/crio/crio.conf.d"},
		{name: "crio.conf written", file: "etc/crio/crio.conf", path: "/etc/crio/crio.conf"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			host := hosttest.Write(t, []string{"/etc/crio/crio.conf.d"}, map[string][]byte{"/etc/crio/crio.conf": []byte("[crio]\n")})
			e := newEngine(t, host)
			plan, err := e.PlanInstall(ctx, spec(t, runtime.ModeRuntimeClass))
			assert.NilError(t, err)
			assert.NilError(t, os.WriteFile(filepath.Join(host, c.file), []byte("[crio.runtime.runtimes.kata-qemu]\n"), 0o644))
			before := hosttest.Snapshot(t, host)
			err = e.Apply(ctx, plan)
			var se *runtime.StalePlanError
			assert.Assert(t, errors.As(err, &se), "%v", err)
			assert.Check(t, is.Equal(se.Path, c.path))
			assert.Check(t, is.ErrorContains(err, "config changed since it was planned: re-plan"))
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
		})
	}
}

// The same engine name under another prefix is refused.
func TestSameNameOtherPrefixRefused(t *testing.T) {
	ctx := context.Background()
	host := hosttest.Write(t, []string{"/etc/crio/crio.conf.d"}, nil)
	e := newEngine(t, host)
	plan, err := e.PlanInstall(ctx, spec(t, runtime.ModeRuntimeClass))
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, plan))
	hs, err := runtime.Handlers([]string{"qemu", "clh", "dragonball"}, runtime.WithPrefix("/usr/local"))
	assert.NilError(t, err)
	_, err = e.PlanInstall(ctx, runtime.Spec{Handlers: hs, Mode: runtime.ModeRuntimeClass})
	assert.Check(t, is.ErrorContains(err, "records handler kata with shim /opt/kata/bin/containerd-shim-kata-v2"))
	assert.Check(t, is.ErrorContains(err, "with shim /usr/local/kata/bin/containerd-shim-kata-v2"))
	assert.Check(t, is.ErrorContains(err, "crio.WithName"))
}

// A drop-in directory the host refuses to write fails naming the file and
// leaves nothing: no journal, no state directory.
func TestRefusedWriteLeavesNothing(t *testing.T) {
	ctx := context.Background()
	host := hosttest.Write(t, []string{"/etc/crio/crio.conf.d"}, nil)
	e := newEngine(t, host)
	plan, err := e.PlanInstall(ctx, spec(t, runtime.ModeRuntimeClass))
	assert.NilError(t, err)
	before := hosttest.Snapshot(t, host)
	dir := filepath.Join(host, "etc/crio/crio.conf.d")
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		t.Skipf("chattr +i: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", dir).Run() })
	err = e.Apply(ctx, plan)
	assert.Check(t, is.ErrorContains(err, "create /etc/crio/crio.conf.d/99-kata-deploy.conf"))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
}
