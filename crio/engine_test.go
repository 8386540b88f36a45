package crio

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/golden"

	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// configs holds the real-world CRI-O configs other packages' tests read
// too; testdata/README.md says where each comes from.
const configs = "../testdata/crio/"

type hostCase struct {
	name  string
	files map[string]string // host path -> file, relative to this directory
	dirs  []string
}

func cases() []hostCase {
	return []hostCase{
		{name: "crio-1.34-default", files: map[string]string{"/etc/crio/crio.conf": configs + "crio-1.34-default.conf"}},
		{name: "crio-1.34-conf-d", files: map[string]string{
			"/etc/crio/crio.conf":                configs + "crio-1.34-default.conf",
			"/etc/crio/crio.conf.d/10-crun.conf": configs + "10-crun.conf",
		}},
		{name: "crio-no-config", dirs: []string{"/etc"}},
	}
}

func makeHost(t *testing.T, files map[string]string, dirs []string) string {
	t.Helper()
	data := map[string][]byte{}
	for p, src := range files {
		b, err := os.ReadFile(filepath.FromSlash(src))
		assert.NilError(t, err)
		data[p] = b
	}
	return hosttest.Write(t, dirs, data)
}

func spec(t testing.TB, mode runtime.Mode) runtime.Spec {
	t.Helper()
	hs, err := runtime.Handlers([]string{"qemu", "clh", "dragonball"})
	assert.NilError(t, err)
	return runtime.Spec{Handlers: hs, Mode: mode}
}

func newEngine(t testing.TB, host string) *Engine {
	t.Helper()
	v, err := runtime.ParseVersion("1.34.0")
	assert.NilError(t, err)
	e, err := New(host, v)
	assert.NilError(t, err)
	return e
}

func TestInstallGolden(t *testing.T) {
	ctx := context.Background()
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			host := makeHost(t, c.files, c.dirs)
			before := hosttest.Snapshot(t, host)
			e := newEngine(t, host)
			s := spec(t, runtime.ModeRuntimeClass)

			plan, err := e.PlanInstall(context.Background(), s)
			assert.NilError(t, err)
			golden.Assert(t, plan.Diff(), c.name+".install.golden")
			assert.NilError(t, e.Apply(ctx, plan))

			again, err := e.PlanInstall(context.Background(), s)
			assert.NilError(t, err)
			assert.Check(t, again.Empty(), "second install is not a no-op:\n%s", again.Diff())

			undo, err := e.PlanUninstall(context.Background())
			assert.NilError(t, err)
			golden.Assert(t, undo.Diff(), c.name+".uninstall.golden")
			assert.NilError(t, e.Apply(ctx, undo))
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
		})
	}
}

func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		name, file string
		mode       runtime.Mode
		line       int
		key, msg   string
	}{
		{name: "untrusted", file: configs + "crio-1.34-default.conf", mode: runtime.ModeUntrusted, msg: "removed in CRI-O 1.14"},
		{name: "handler taken", file: "testdata/bad/kata-defined.conf", line: 2, key: "crio.runtime.runtimes.kata-qemu", msg: "already defined"},
		{name: "malformed", file: "testdata/bad/malformed.conf", line: 2, msg: "expected"},
	} {
		t.Run(c.name, func(t *testing.T) {
			host := makeHost(t, map[string]string{"/etc/crio/crio.conf": c.file}, nil)
			before := hosttest.Snapshot(t, host)
			mode := c.mode
			if mode == "" {
				mode = runtime.ModeRuntimeClass
			}
			_, err := newEngine(t, host).PlanInstall(context.Background(), spec(t, mode))
			assert.ErrorContains(t, err, c.msg)
			if c.key != "" || c.line != 0 {
				var ce *runtime.ConfigError
				assert.Assert(t, errors.As(err, &ce))
				assert.Check(t, is.Equal(ce.Path, "/etc/crio/crio.conf"))
				assert.Check(t, is.Equal(ce.Key, c.key))
				assert.Check(t, is.Equal(ce.Line, c.line))
			}
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
		})
	}
}

// The exported defaults predate runtime's variant table and must not
// drift from it.
func TestDefaultsMatchVariantTable(t *testing.T) {
	assert.Equal(t, DefaultConfigFile, runtime.VariantCRIO.ConfigPath())
	assert.Equal(t, DefaultConfigDir, runtime.VariantCRIO.DropInDir())
}
