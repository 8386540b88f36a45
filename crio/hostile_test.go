package crio

// Hostile and unlucky hosts (docs/hostile-hosts.md).

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// A symlinked crio.conf.d (present or dangling) is written through, and
// uninstall leaves the link exactly as it was.
func TestSymlinkedDropInDirectory(t *testing.T) {
	for name, target := range map[string]string{"dangling": "/elsewhere/crio.d", "present": "/usr/share/crio.d"} {
		t.Run(name, func(t *testing.T) {
			dirs := []string{"/etc/crio"}
			if name == "present" {
				dirs = append(dirs, target)
			}
			host := hosttest.Write(t, dirs, nil)
			assert.NilError(t, os.Symlink(target, filepath.Join(host, "etc/crio/crio.conf.d")))
			before := hosttest.Snapshot(t, host)
			e := newEngine(t, host)
			ctx := context.Background()
			plan, err := e.PlanInstall(ctx, spec(t, runtime.ModeRuntimeClass))
			assert.NilError(t, err)
			assert.NilError(t, e.Apply(ctx, plan))
			_, err = os.Stat(filepath.Join(host, target, "99-kata-deploy.conf"))
			assert.NilError(t, err)
			undo, err := e.PlanUninstall(ctx)
			assert.NilError(t, err)
			assert.NilError(t, e.Apply(ctx, undo))
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
		})
	}
}

// A user's edit of kata-deploy's own drop-in is kept in a copy and named.
func TestUninstallKeepsUserEditOfDropIn(t *testing.T) {
	host := hosttest.Write(t, []string{"/etc/crio/crio.conf.d"}, nil)
	e := newEngine(t, host)
	ctx := context.Background()
	plan, err := e.PlanInstall(ctx, spec(t, runtime.ModeRuntimeClass))
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, plan))
	p := filepath.Join(host, "etc/crio/crio.conf.d/99-kata-deploy.conf")
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	assert.NilError(t, err)
	_, err = f.WriteString("# mine\n")
	assert.NilError(t, err)
	assert.NilError(t, f.Close())
	edited, _ := os.ReadFile(p)
	undo, err := e.PlanUninstall(ctx)
	assert.NilError(t, err)
	assert.Check(t, is.Contains(strings.Join(undo.Notes, "\n"), "/var/lib/kata-deploy/saved/etc/crio/crio.conf.d/99-kata-deploy.conf."))
	assert.NilError(t, e.Apply(ctx, undo))
	saved, _ := filepath.Glob(filepath.Join(host, "var/lib/kata-deploy/saved/etc/crio/crio.conf.d/99-kata-deploy.conf.*"))
	assert.Assert(t, is.Len(saved, 1))
	got, _ := os.ReadFile(saved[0])
	assert.Check(t, bytes.Equal(got, edited))
}

func TestConfigErrorsDoNotEchoTheFile(t *testing.T) {
	host := hosttest.Write(t, nil, map[string][]byte{
		"/etc/crio/crio.conf": []byte("root:$6$secret-hash-that-must-not-leak:19000:0:99999:7:::\n"),
	})
	_, err := newEngine(t, host).PlanInstall(context.Background(), spec(t, runtime.ModeRuntimeClass))
	assert.Assert(t, err != nil)
	assert.Check(t, len(err.Error()) < 200, err.Error())
	assert.Check(t, !strings.Contains(err.Error(), "must-not-leak"), err.Error())
}
