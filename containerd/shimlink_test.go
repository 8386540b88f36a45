package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/internal/journal"
	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	"github.com/kata-deploy/kata-deploy/runtime"
)

const qemuLink = "usr/local/bin/containerd-shim-kata-qemu-v2"

func TestShimBinaryName(t *testing.T) {
	for in, want := range map[string]string{
		"io.containerd.kata.v2":             "containerd-shim-kata-v2",
		"io.containerd.kata-qemu.v2":        "containerd-shim-kata-qemu-v2",
		"io.containerd.kata-qemu-canary.v2": "containerd-shim-kata-qemu-canary-v2",
		"io.containerd.runc.v2":             "containerd-shim-runc-v2",
		"kata":                              "",
		"io.containerd.kata.":               "",
	} {
		assert.Check(t, is.Equal(ShimBinaryName(in), want), in)
	}
}

// shimHost is a containerd 1.6 node with its default config.
func shimHost(t *testing.T, dirs ...string) (string, hostCase) {
	t.Helper()
	c := hostCase{variant: runtime.VariantContainerd, version: "1.6.20"}
	files := map[string][]byte{}
	data, err := os.ReadFile(configs + "containerd-1.6-default.toml")
	assert.NilError(t, err)
	files["/etc/containerd/config.toml"] = data
	return hosttest.Write(t, dirs, files), c
}

func readLink(t *testing.T, host, p string) string {
	t.Helper()
	target, err := os.Readlink(filepath.Join(host, p))
	assert.NilError(t, err)
	return target
}

// A name containerd 1.6 would run that kata-deploy did not make is never
// replaced: the plan is refused, naming the path, and nothing changes.
func TestShimLinkRefusesSomeoneElses(t *testing.T) {
	for name, put := range map[string]func(p string) error{
		"binary":         func(p string) error { return os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755) },
		"link elsewhere": func(p string) error { return os.Symlink("/usr/bin/other-shim", p) },
		// Even a link to the very shim: kata-deploy would otherwise remove
		// at uninstall a link it did not make.
		"same link": func(p string) error { return os.Symlink("/opt/kata/bin/containerd-shim-kata-v2", p) },
		"directory": func(p string) error { return os.Mkdir(p, 0o755) },
	} {
		t.Run(name, func(t *testing.T) {
			host, c := shimHost(t, "/usr/local/bin")
			assert.NilError(t, put(filepath.Join(host, qemuLink)))
			before := hosttest.Snapshot(t, host)
			e := newEngine(t, host, c)
			_, err := e.PlanInstall(context.Background(), specFor(t, c))
			assert.ErrorContains(t, err, "/"+qemuLink+": already exists")
			assert.ErrorContains(t, err, "kata-deploy did not make it")
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
		})
	}
}

// A name taken between plan and apply is kept too: the stale plan is
// refused before anything is written.
func TestShimLinkTakenAfterPlan(t *testing.T) {
	host, c := shimHost(t, "/usr/local/bin")
	before := hosttest.Snapshot(t, host)
	e := newEngine(t, host, c)
	plan, err := e.PlanInstall(context.Background(), specFor(t, c))
	assert.NilError(t, err)
	assert.NilError(t, os.WriteFile(filepath.Join(host, qemuLink), []byte("theirs"), 0o755))
	err = e.Apply(context.Background(), plan)
	var ce *journal.ChangedError
	assert.Assert(t, errors.As(err, &ce), "got %v", err)
	assert.Check(t, is.Equal(ce.Path, "/"+qemuLink))
	before[qemuLink] = "theirs"
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
}

// Uninstall removes kata-deploy's links, but one a user has pointed
// elsewhere or replaced with a file since is theirs: left, with a note.
func TestShimLinkUninstallLeavesUserChanges(t *testing.T) {
	ctx := context.Background()
	host, c := shimHost(t, "/usr/local/bin")
	e := newEngine(t, host, c)
	plan, err := e.PlanInstall(ctx, specFor(t, c))
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, plan))
	assert.Check(t, is.Equal(readLink(t, host, qemuLink), "/opt/kata/bin/containerd-shim-kata-v2"))

	qemu := filepath.Join(host, qemuLink)
	assert.NilError(t, os.Remove(qemu))
	assert.NilError(t, os.Symlink("/opt/mine/shim", qemu))
	clh := filepath.Join(host, "usr/local/bin/containerd-shim-kata-clh-v2")
	assert.NilError(t, os.Remove(clh))
	assert.NilError(t, os.WriteFile(clh, []byte("mine"), 0o755))

	undo, err := e.PlanUninstall(ctx)
	assert.NilError(t, err)
	for _, ch := range undo.Changes {
		assert.Check(t, ch.Path != "/"+qemuLink && !strings.HasSuffix(ch.Path, "kata-clh-v2"), "uninstall touches %s", ch.Path)
	}
	assert.Check(t, is.Contains(undo.Diff(), "# note: /"+qemuLink+" now points to /opt/mine/shim"))
	assert.Check(t, is.Contains(undo.Diff(), "# note: /usr/local/bin/containerd-shim-kata-clh-v2 is no longer the symlink"))
	assert.NilError(t, e.Apply(ctx, undo))

	assert.Check(t, is.Equal(readLink(t, host, qemuLink), "/opt/mine/shim"))
	data, err := os.ReadFile(clh)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(data), "mine"))
	_, err = os.Lstat(filepath.Join(host, "usr/local/bin/containerd-shim-kata-v2"))
	assert.Check(t, errors.Is(err, os.ErrNotExist), "kata-deploy's own link is left")
	_, err = os.Stat(filepath.Join(host, journal.PathFor("containerd")))
	assert.Check(t, errors.Is(err, os.ErrNotExist), "the journal is left")
}

// failAfter is a context that ends after n checks of Err: Apply checks it
// once before it writes anything and then before each change, so it stops
// an apply part-way, as a failure would.
type failAfter struct {
	context.Context
	n int
}

func (c *failAfter) Err() error {
	if c.n--; c.n < 0 {
		return context.Canceled
	}
	return nil
}

// An apply that fails part-way puts back what it had done, its journal
// included; a run killed part-way (its journal written, a temporary link
// left) is undone by uninstall. Either way the host ends as it was.
func TestShimLinkFailedApplyLeavesNothing(t *testing.T) {
	ctx := context.Background()
	for changes := 0; changes < 4; changes++ {
		host, c := shimHost(t, "/usr/local/bin")
		before := hosttest.Snapshot(t, host)
		e := newEngine(t, host, c)
		plan, err := e.PlanInstall(ctx, specFor(t, c))
		assert.NilError(t, err)
		assert.Assert(t, len(plan.Changes) == 4) // the config and three links

		err = e.Apply(&failAfter{Context: ctx, n: changes + 1}, plan)
		assert.Check(t, errors.Is(err, context.Canceled), "after %d changes: %v", changes, err)
		assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before), "after %d changes, rollback left something", changes)

		// What a run killed after its links' journal was written leaves:
		// the journal, and a killed Symlink's temporary.
		assert.NilError(t, e.Apply(ctx, plan))
		tmp := filepath.Join(host, "usr/local/bin/.containerd-shim-kata-qemu-v2.kata-deploy-x1")
		assert.NilError(t, os.Symlink("/opt/kata/bin/containerd-shim-kata-v2", tmp))
		undo, err := e.PlanUninstall(ctx)
		assert.NilError(t, err)
		assert.NilError(t, e.Apply(ctx, undo))
		assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before), "after %d changes", changes)
	}
}

// Two installs side by side (--suffix) get links of their own names, and
// uninstalling one leaves the other's.
func TestShimLinkSuffixInstallsAreDistinct(t *testing.T) {
	ctx := context.Background()
	host, c := shimHost(t, "/usr/local/bin")
	before := hosttest.Snapshot(t, host)
	v, err := runtime.ParseVersion(c.version)
	assert.NilError(t, err)
	main, err := New(host, c.variant, v)
	assert.NilError(t, err)
	canary, err := New(host, c.variant, v, WithName("kata-deploy-canary"))
	assert.NilError(t, err)

	hs, err := runtime.Handlers([]string{"qemu", "dragonball"})
	assert.NilError(t, err)
	chs, err := runtime.Handlers([]string{"qemu", "dragonball"}, runtime.WithSuffix("canary"))
	assert.NilError(t, err)
	for _, in := range []struct {
		e  *Engine
		hs []runtime.Handler
	}{{main, hs}, {canary, chs}} {
		plan, err := in.e.PlanInstall(ctx, runtime.Spec{Handlers: in.hs, Mode: runtime.ModeRuntimeClass})
		assert.NilError(t, err)
		assert.NilError(t, in.e.Apply(ctx, plan))
	}
	for link, target := range map[string]string{
		"containerd-shim-kata-v2":                   "/opt/kata/bin/containerd-shim-kata-v2",
		"containerd-shim-kata-qemu-v2":              "/opt/kata/bin/containerd-shim-kata-v2",
		"containerd-shim-kata-dragonball-v2":        "/opt/kata/runtime-rs/bin/containerd-shim-kata-v2",
		"containerd-shim-kata-canary-v2":            "/opt/kata-canary/bin/containerd-shim-kata-v2",
		"containerd-shim-kata-qemu-canary-v2":       "/opt/kata-canary/bin/containerd-shim-kata-v2",
		"containerd-shim-kata-dragonball-canary-v2": "/opt/kata-canary/runtime-rs/bin/containerd-shim-kata-v2",
	} {
		assert.Check(t, is.Equal(readLink(t, host, "usr/local/bin/"+link), target))
	}

	undo, err := canary.PlanUninstall(ctx)
	assert.NilError(t, err)
	assert.NilError(t, canary.Apply(ctx, undo))
	entries, err := os.ReadDir(filepath.Join(host, "usr/local/bin"))
	assert.NilError(t, err)
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	assert.Check(t, is.DeepEqual(names, []string{"containerd-shim-kata-dragonball-v2", "containerd-shim-kata-qemu-v2", "containerd-shim-kata-v2"}))
	undo, err = main.PlanUninstall(ctx)
	assert.NilError(t, err)
	assert.NilError(t, main.Apply(ctx, undo))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
}

// A host root without /usr/local/bin gets it, and loses it again at
// uninstall, unless something else has been put there meanwhile.
func TestShimLinkDirMissing(t *testing.T) {
	ctx := context.Background()
	host, c := shimHost(t, "/usr")
	before := hosttest.Snapshot(t, host)
	e := newEngine(t, host, c)
	plan, err := e.PlanInstall(ctx, specFor(t, c))
	assert.NilError(t, err)
	assert.Check(t, is.Contains(plan.Diff(), "create directory /usr/local\ncreate directory /usr/local/bin\ncreate symlink /usr/local/bin/containerd-shim-kata-v2 -> "))
	assert.NilError(t, e.Apply(ctx, plan))
	again, err := e.PlanInstall(ctx, specFor(t, c))
	assert.NilError(t, err)
	assert.Check(t, again.Empty(), again.Diff())
	undo, err := e.PlanUninstall(ctx)
	assert.NilError(t, err)
	assert.Check(t, is.Contains(undo.Diff(), "remove directory /usr/local/bin\nremove directory /usr/local\n"))
	assert.NilError(t, e.Apply(ctx, undo))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))

	// Someone else's file in the directory kata-deploy made keeps it.
	plan, err = e.PlanInstall(ctx, specFor(t, c))
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, plan))
	assert.NilError(t, os.WriteFile(filepath.Join(host, "usr/local/bin/helm"), []byte("x"), 0o755))
	undo, err = e.PlanUninstall(ctx)
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, undo))
	after := hosttest.Snapshot(t, host)
	assert.Check(t, is.Equal(after["usr/local/bin/helm"], "x"))
	assert.Check(t, is.Len(after, len(before)+3)) // local/, local/bin/, helm
}

// containerd 1.7 passes runtime_path on: no links. A node upgraded from
// 1.6 loses the links its earlier install made at the next install.
func TestShimLinksGoAfterUpgrade(t *testing.T) {
	ctx := context.Background()
	host, c := shimHost(t, "/usr/local/bin")
	e := newEngine(t, host, c)
	plan, err := e.PlanInstall(ctx, specFor(t, c))
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, plan))

	c.version = "1.7.22"
	e = newEngine(t, host, c)
	plan, err = e.PlanInstall(ctx, specFor(t, c))
	assert.NilError(t, err)
	var ops []string
	for _, ch := range plan.Changes {
		ops = append(ops, ch.Op.String()+" "+ch.Path)
	}
	assert.Check(t, is.DeepEqual(ops, []string{
		"remove symlink /usr/local/bin/containerd-shim-kata-clh-v2",
		"remove symlink /usr/local/bin/containerd-shim-kata-qemu-v2",
		"remove symlink /usr/local/bin/containerd-shim-kata-v2",
	}))
	assert.NilError(t, e.Apply(ctx, plan))
	entries, err := os.ReadDir(filepath.Join(host, "usr/local/bin"))
	assert.NilError(t, err)
	assert.Check(t, is.Len(entries, 0))
	j, err := os.ReadFile(filepath.Join(host, journal.PathFor("containerd")))
	assert.NilError(t, err)
	assert.Check(t, !strings.Contains(string(j), `"links"`), string(j))
}

// The same install under another prefix is refused, naming the handler
// and both places (it would orphan the first install's files). A journal
// written before handlers' paths were recorded cannot tell: there a shim
// that moved gets its link pointed at the new place, and uninstall still
// removes it.
func TestShimLinkFollowsAMovedShim(t *testing.T) {
	ctx := context.Background()
	host, c := shimHost(t, "/usr/local/bin")
	before := hosttest.Snapshot(t, host)
	e := newEngine(t, host, c)
	plan, err := e.PlanInstall(ctx, specFor(t, c))
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, plan))

	hs, err := runtime.Handlers([]string{"qemu", "clh"}, runtime.WithPrefix("/usr/local/lib"))
	assert.NilError(t, err)
	moved := runtime.Spec{Handlers: hs, Mode: runtime.ModeRuntimeClass}
	_, err = e.PlanInstall(ctx, moved)
	assert.Check(t, is.ErrorContains(err, "records handler kata with shim /opt/kata/bin/containerd-shim-kata-v2"))
	assert.Check(t, is.ErrorContains(err, "installing it with shim /usr/local/lib/kata/bin/containerd-shim-kata-v2"))

	// An older journal: no "registered".
	jp := filepath.Join(host, journal.PathFor("containerd"))
	var old map[string]any
	data, err := os.ReadFile(jp)
	assert.NilError(t, err)
	assert.NilError(t, json.Unmarshal(data, &old))
	delete(old, "registered")
	data, err = json.Marshal(old)
	assert.NilError(t, err)
	assert.NilError(t, os.WriteFile(jp, data, 0o600))

	plan, err = e.PlanInstall(ctx, moved)
	assert.NilError(t, err)
	assert.Check(t, is.Contains(plan.Diff(), "remove symlink /"+qemuLink+" -> /opt/kata/bin/containerd-shim-kata-v2\ncreate symlink /"+qemuLink+" -> /usr/local/lib/kata/bin/containerd-shim-kata-v2\n"))
	assert.NilError(t, e.Apply(ctx, plan))
	assert.Check(t, is.Equal(readLink(t, host, qemuLink), "/usr/local/lib/kata/bin/containerd-shim-kata-v2"))

	undo, err := e.PlanUninstall(ctx)
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, undo))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
}
