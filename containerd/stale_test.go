package containerd_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/containerd"
	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
)

// A plan is refused, writing nothing, when a file it only read changed
// after it was made: the drop-in it would write is one nothing reads any
// more, or one of the wrong version.
func TestPlanRefusedWhenAReadFileChanged(t *testing.T) {
	def, err := os.ReadFile("../testdata/containerd/containerd-2.2-default.toml")
	assert.NilError(t, err)
	const etc = "/etc/containerd/config.toml"
	cases := []struct {
		name   string
		change func(t *testing.T, host string)
		path   string
	}{
		{name: "imports line removed", path: etc, change: func(t *testing.T, host string) {
			edit(t, host, etc, "imports = ['/etc/containerd/conf.d/*.toml']\n", "")
		}},
		{name: "version 3 to 2", path: etc, change: func(t *testing.T, host string) {
			edit(t, host, etc, "version = 3\n", "version = 2\n")
		}},
		{name: "a file added to the imported directory", path: "/etc/containerd/conf.d", change: func(t *testing.T, host string) {
			assert.NilError(t, os.WriteFile(filepath.Join(host, "etc/containerd/conf.d/10-mine.toml"), []byte("version = 3\n"), 0o644))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			host := hosttest.Write(t, []string{"/etc/containerd/conf.d"}, map[string][]byte{etc: def})
			e, err := containerd.New(host, kataruntime.VariantContainerd, v22())
			assert.NilError(t, err)
			plan, err := e.PlanInstall(ctx, spec(t))
			assert.NilError(t, err)
			c.change(t, host)
			before := hosttest.Snapshot(t, host)
			err = e.Apply(ctx, plan)
			assert.Check(t, errors.Is(err, kataruntime.ErrStalePlan), "%v", err)
			var se *kataruntime.StalePlanError
			assert.Assert(t, errors.As(err, &se))
			assert.Check(t, is.Equal(se.Path, c.path))
			assert.Check(t, se.Read)
			assert.Check(t, is.ErrorContains(err, c.path+": config changed since it was planned: re-plan"))
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before), "a refused plan wrote")
		})
	}
}

func edit(t *testing.T, host, p, old, new string) {
	t.Helper()
	full := filepath.Join(host, p)
	data, err := os.ReadFile(full)
	assert.NilError(t, err)
	assert.Assert(t, strings.Contains(string(data), old))
	assert.NilError(t, os.WriteFile(full, []byte(strings.Replace(string(data), old, new, 1)), 0o644))
}

// The same engine name under another prefix would repoint every handler
// and orphan the first install's files: it is refused, naming a handler and
// both of its places. The same handler set again is the same install.
func TestSameNameOtherPrefixRefused(t *testing.T) {
	ctx := context.Background()
	host := containerdHost(t)
	e, err := containerd.New(host, kataruntime.VariantContainerd, v22())
	assert.NilError(t, err)
	plan, err := e.PlanInstall(ctx, spec(t))
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, plan))
	before := hosttest.Snapshot(t, host)

	_, err = e.PlanInstall(ctx, spec(t, kataruntime.WithPrefix("/usr/local")))
	assert.Check(t, is.ErrorContains(err, "records handler kata with shim /opt/kata/bin/containerd-shim-kata-v2 and config /opt/kata/share/defaults/kata-containers/"))
	assert.Check(t, is.ErrorContains(err, "installing it with shim /usr/local/kata/bin/containerd-shim-kata-v2 and config /usr/local/kata/share/defaults/kata-containers/"))
	assert.Check(t, is.ErrorContains(err, "containerd.WithName"))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))

	again, err := e.PlanInstall(ctx, spec(t))
	assert.NilError(t, err)
	assert.Check(t, again.Empty(), again.Diff())
}

// chattr makes a host path immutable (even root cannot write it), and
// undoes it when the test ends; it skips where the file system or the user
// cannot.
func chattr(t *testing.T, p string) {
	t.Helper()
	if out, err := exec.Command("chattr", "+i", p).CombinedOutput(); err != nil {
		t.Skipf("chattr +i %s: %v: %s", p, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", p).Run() })
}

// A config write the host refuses fails naming the file, and leaves the
// host as it was: no drop-in, no journal, no state directory.
func TestRefusedWriteLeavesNothing(t *testing.T) {
	for _, c := range []struct {
		name, immutable, msg string
	}{
		{name: "immutable config", immutable: "etc/containerd/config.toml", msg: "modify /etc/containerd/config.toml"},
		{name: "immutable config directory", immutable: "etc/containerd", msg: "create /etc/containerd/kata-deploy.toml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			host := containerdHost(t)
			e, err := containerd.New(host, kataruntime.VariantContainerd, v22())
			assert.NilError(t, err)
			plan, err := e.PlanInstall(ctx, spec(t))
			assert.NilError(t, err)
			before := hosttest.Snapshot(t, host)
			chattr(t, filepath.Join(host, c.immutable))
			err = e.Apply(ctx, plan)
			assert.Check(t, is.ErrorContains(err, c.msg))
			assert.Check(t, is.ErrorContains(err, "operation not permitted"))
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before), "a refused install left something")
			written, err := e.ConfigWritten()
			assert.NilError(t, err)
			assert.Check(t, written.IsZero())
		})
	}
}
