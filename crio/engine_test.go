package crio

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/golden"

	"github.com/kata-deploy/kata-deploy/runtime"
)

type hostCase struct {
	name  string
	files map[string]string // host path -> testdata file
	dirs  []string
}

func cases() []hostCase {
	return []hostCase{
		{name: "crio-1.34-default", files: map[string]string{"/etc/crio/crio.conf": "configs/crio-1.34-default.conf"}},
		{name: "crio-1.34-conf-d", files: map[string]string{
			"/etc/crio/crio.conf":                "configs/crio-1.34-default.conf",
			"/etc/crio/crio.conf.d/10-crun.conf": "configs/10-crun.conf",
		}},
		{name: "crio-no-config", dirs: []string{"/etc"}},
	}
}

func makeHost(t *testing.T, files map[string]string, dirs []string) string {
	t.Helper()
	host := t.TempDir()
	for _, d := range dirs {
		assert.NilError(t, os.MkdirAll(filepath.Join(host, d), 0o755))
	}
	for p, src := range files {
		data, err := os.ReadFile(filepath.Join("testdata", src))
		assert.NilError(t, err)
		assert.NilError(t, os.MkdirAll(filepath.Join(host, filepath.Dir(p)), 0o755))
		assert.NilError(t, os.WriteFile(filepath.Join(host, p), data, 0o644))
	}
	return host
}

func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	assert.NilError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		data, err := os.ReadFile(p)
		out[rel] = string(data)
		return err
	}))
	return out
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
			before := snapshot(t, host)
			e := newEngine(t, host)
			s := spec(t, runtime.ModeRuntimeClass)

			plan, err := e.PlanInstall(s)
			assert.NilError(t, err)
			golden.Assert(t, plan.Diff(), c.name+".install.golden")
			assert.NilError(t, e.Apply(ctx, plan))

			again, err := e.PlanInstall(s)
			assert.NilError(t, err)
			assert.Check(t, again.Empty(), "second install is not a no-op:\n%s", again.Diff())

			undo, err := e.PlanUninstall()
			assert.NilError(t, err)
			golden.Assert(t, undo.Diff(), c.name+".uninstall.golden")
			assert.NilError(t, e.Apply(ctx, undo))
			assert.Check(t, is.DeepEqual(snapshot(t, host), before))
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
		{name: "untrusted", file: "configs/crio-1.34-default.conf", mode: runtime.ModeUntrusted, msg: "removed in CRI-O 1.14"},
		{name: "handler taken", file: "bad/kata-defined.conf", key: "crio.runtime.runtimes.kata-qemu", msg: "already defined"},
		{name: "malformed", file: "bad/malformed.conf", line: 2, msg: "expected"},
	} {
		t.Run(c.name, func(t *testing.T) {
			host := makeHost(t, map[string]string{"/etc/crio/crio.conf": c.file}, nil)
			before := snapshot(t, host)
			mode := c.mode
			if mode == "" {
				mode = runtime.ModeRuntimeClass
			}
			_, err := newEngine(t, host).PlanInstall(spec(t, mode))
			assert.ErrorContains(t, err, c.msg)
			if c.key != "" || c.line != 0 {
				var ce *runtime.ConfigError
				assert.Assert(t, errors.As(err, &ce))
				assert.Check(t, is.Equal(ce.Path, "/etc/crio/crio.conf"))
				assert.Check(t, is.Equal(ce.Key, c.key))
				assert.Check(t, is.Equal(ce.Line, c.line))
			}
			assert.Check(t, is.DeepEqual(snapshot(t, host), before))
		})
	}
}
