package installer

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/golden"

	"github.com/kata-deploy/kata-deploy/cmd/internal/cleanup"
	"github.com/kata-deploy/kata-deploy/internal/noderecord"
	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/runtime"
)

const containerdConfig = `version = 2
root = "/var/lib/containerd"

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
`

// payload writes a kata-static tree with the given shims' configurations.
func payload(t *testing.T, shims ...string) string {
	t.Helper()
	files := map[string][]byte{
		"/opt/kata/bin/containerd-shim-kata-v2":             []byte("#!/bin/sh\n"),
		"/opt/kata/share/kata-containers/vmlinux.container": []byte("kernel"),
	}
	for _, s := range shims {
		files["/opt/kata/share/defaults/kata-containers/configuration-"+s+".toml"] = []byte("[hypervisor." + s + "]\npath = \"/opt/kata/bin/" + s + "\"\n")
	}
	dir := hosttest.Write(t, nil, files)
	assert.NilError(t, os.Chmod(filepath.Join(dir, "opt/kata/bin/containerd-shim-kata-v2"), 0o755))
	return dir
}

func host(t *testing.T) string {
	return hosttest.Write(t, []string{"/etc/systemd/system"}, map[string][]byte{
		"/etc/containerd/config.toml":            []byte(containerdConfig),
		"/lib/systemd/system/containerd.service": []byte("[Service]\nExecStart=/usr/bin/containerd\n"),
	})
}

// filesOnly is a Config for a host root with no API server and no systemd,
// as the README's "outside Kubernetes" examples run it.
func filesOnly(hostRoot, payload string, shims ...string) *Config {
	return &Config{HostRoot: hostRoot, Runtime: "containerd", RuntimeVersion: "1.7.22", Payload: payload,
		Mode: runtime.ModeRuntimeClass, Shims: shims, VerifyTimeout: time.Second}
}

// TestRecordDrivesUninstall: an install under another prefix is found and
// removed by an uninstall that is not told the prefix (issue 11, item 4).
func TestRecordDrivesUninstall(t *testing.T) {
	ctx := context.Background()
	h := host(t)
	before := hosttest.Snapshot(t, h)
	pl := payload(t, "qemu", "fc")

	c := filesOnly(h, pl, "qemu", "fc")
	c.Prefix = "/usr/local/lib/x"
	c.Snapshotters = map[string]string{"fc": "devmapper"}
	state, err := c.Install(ctx)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(state, nodelabel.KataWaitingRestart), "restart disabled and nothing verified: never advertise the handlers")

	c0 := filesOnly(h, "")
	root := mustRoot(t, c0.HostRoot)
	rec, err := c0.loadRecord(root)
	assert.NilError(t, err)
	assert.Assert(t, rec != nil)
	assert.Check(t, is.Equal(rec.State, noderecord.PendingRestart))
	assert.Check(t, is.Equal(rec.Dest, "/usr/local/lib/x/kata"))
	assert.Check(t, is.DeepEqual(rec.HandlerNames(), []string{"kata", "kata-qemu", "kata-fc"}))
	assert.Check(t, is.Equal(rec.Handlers[2].Snapshotter, "devmapper"))
	assert.Check(t, is.DeepEqual(rec.ConfigFiles, []string{"/etc/containerd/config.toml"}))

	// Status reads the record, whatever shims it is given.
	st, err := filesOnly(h, "", "qemu").Status(ctx)
	assert.NilError(t, err)
	assert.Check(t, st.Installed)
	var text bytes.Buffer
	assert.NilError(t, st.Write(&text, "text"))
	golden.Assert(t, normalise(text.String()), "prefix.status-text.golden")
	var js bytes.Buffer
	assert.NilError(t, st.Write(&js, "json"))
	golden.Assert(t, normalise(js.String()), "prefix.status-json.golden")

	// Installing the same install elsewhere would strand this one.
	_, err = filesOnly(h, pl, "qemu", "fc").Install(ctx)
	assert.Check(t, is.ErrorContains(err, "already installed in /usr/local/lib/x/kata"))
	err = filesOnly(h, pl, "qemu", "fc").Plan(ctx, &bytes.Buffer{})
	assert.Check(t, is.ErrorContains(err, "already installed in /usr/local/lib/x/kata"), "plan must run install's checks")

	// Uninstall with none of the install's flags.
	u := &Config{HostRoot: h, Runtime: "auto", Shims: []string{"qemu", "clh", "dragonball"}, VerifyTimeout: time.Second}
	assert.NilError(t, u.Uninstall(ctx))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, h), before), "uninstall left something behind")

	st, err = filesOnly(h, "", "qemu").Status(ctx)
	assert.NilError(t, err)
	assert.Check(t, !st.Installed)
	assert.Check(t, is.Len(st.Installs, 0))
}

// normalise replaces the record's time of update, which changes per run.
func normalise(s string) string {
	return regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`).ReplaceAllString(s, "2006-01-02T15:04:05Z")
}

// TestPlanRunsInstallChecks: plan refuses what install refuses (issue 14,
// item 2), and both leave the host untouched.
func TestPlanRunsInstallChecks(t *testing.T) {
	ctx := context.Background()
	h := host(t)
	before := hosttest.Snapshot(t, h)
	pl := payload(t, "qemu")
	c := filesOnly(h, pl, "qemu", "fc")
	err := c.Plan(ctx, &bytes.Buffer{})
	assert.Check(t, is.ErrorContains(err, "no Kata config for shim fc"))
	_, ierr := filesOnly(h, pl, "qemu", "fc").Install(ctx)
	assert.Check(t, is.ErrorContains(ierr, "no Kata config for shim fc"))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, h), before), "a refused install changed the host")

	// A snapshotter containerd 1.6 would ignore.
	c = filesOnly(h, payload(t, "qemu", "fc"), "qemu", "fc")
	c.RuntimeVersion = "1.6.20"
	c.Snapshotters = map[string]string{"fc": "devmapper"}
	assert.Check(t, is.ErrorContains(c.Plan(ctx, &bytes.Buffer{}), "no per-runtime snapshotter"))
	c.Snapshotters = map[string]string{"clh": "devmapper"}
	assert.Check(t, is.ErrorContains(c.Plan(ctx, &bytes.Buffer{}), `shim "clh" is not among the selected shims`))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, h), before))
}

// TestStatusUntouched: a node with nothing installed has no installs, in a
// JSON shape that does not depend on the flags.
func TestStatusUntouched(t *testing.T) {
	st, err := filesOnly(host(t), "", "qemu", "clh", "dragonball", "fc").Status(context.Background())
	assert.NilError(t, err)
	data, err := json.Marshal(st)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(data), `{"format":1,"installed":false,"installs":[]}`))
}

// TestCleanupRefusesInstalledNode: the cleanup never resets a node whose
// record says Kata is still there.
func TestCleanupRefusesInstalledNode(t *testing.T) {
	ctx := context.Background()
	h := host(t)
	_, err := filesOnly(h, payload(t, "qemu"), "qemu").Install(ctx)
	assert.NilError(t, err)
	cl := &cleanup.Config{HostRoot: h, Runtime: "auto"}
	assert.Check(t, is.ErrorContains(cl.Run(ctx), "still installed in /opt/kata (pending-restart"))

	// An uninstall a cleanup follows leaves the record for it, marked.
	c0 := filesOnly(h, "")
	root := mustRoot(t, c0.HostRoot)
	rec, err := c0.loadRecord(root)
	assert.NilError(t, err)
	assert.NilError(t, filesOnly(h, "").saveRecord(root, rec, noderecord.Uninstalled))
	st, err := filesOnly(h, "", "qemu").Status(ctx)
	assert.NilError(t, err)
	assert.Check(t, !st.Installed)
	assert.NilError(t, cl.Run(ctx))
	rec, err = noderecord.Load(root, "")
	assert.NilError(t, err)
	assert.Check(t, rec == nil, "the cleanup keeps the record it acted on")
}

// TestContainerd16ShimLinks: on containerd 1.6, plan shows the shim links,
// install makes them (they are not config files in the record), and
// uninstall takes them away with everything else.
func TestContainerd16ShimLinks(t *testing.T) {
	ctx := context.Background()
	h := host(t)
	assert.NilError(t, os.MkdirAll(filepath.Join(h, "usr/local/bin"), 0o755))
	before := hosttest.Snapshot(t, h)
	pl := payload(t, "qemu")
	c := filesOnly(h, pl, "qemu")
	c.RuntimeVersion = "1.6.20"
	var out bytes.Buffer
	assert.NilError(t, c.Plan(ctx, &out))
	assert.Check(t, is.Contains(out.String(), "create symlink /usr/local/bin/containerd-shim-kata-qemu-v2 -> /opt/kata/bin/containerd-shim-kata-v2\n"))
	assert.Check(t, is.Contains(out.String(), "create symlink /usr/local/bin/containerd-shim-kata-v2 -> /opt/kata/bin/containerd-shim-kata-v2\n"))

	_, err := c.Install(ctx)
	assert.NilError(t, err)
	target, err := os.Readlink(filepath.Join(h, "usr/local/bin/containerd-shim-kata-qemu-v2"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(target, "/opt/kata/bin/containerd-shim-kata-v2"))
	c0 := filesOnly(h, "")
	rec, err := c0.loadRecord(mustRoot(t, c0.HostRoot))
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(rec.ConfigFiles, []string{"/etc/containerd/config.toml"}))

	u := &Config{HostRoot: h, Runtime: "auto", VerifyTimeout: time.Second}
	assert.NilError(t, u.Uninstall(ctx))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, h), before), "uninstall left something behind")
}

// TestRerunWritesNothing: a re-run that changes nothing writes nothing,
// in every state an install can settle in; with --restart=false (the node
// waiting for a restart) too (issue 19, item 9).
func TestRerunWritesNothing(t *testing.T) {
	h := host(t)
	c := filesOnly(h, payload(t, "qemu"), "qemu")
	state, err := c.Install(context.Background())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(state, nodelabel.KataWaitingRestart))
	before := mtimes(t, h)
	time.Sleep(20 * time.Millisecond) // a rewrite would show in the mtimes
	state, err = c.Install(context.Background())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(state, nodelabel.KataWaitingRestart))
	assert.Check(t, is.DeepEqual(mtimes(t, h), before))
}

// mtimes maps every path under dir to its modification time.
func mtimes(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out[p] = fi.ModTime()
		return nil
	})
	assert.NilError(t, err)
	return out
}
