package systemd_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
	"github.com/kata-deploy/kata-deploy/systemd/internal/probe/result"
)

// buildProbe builds the probe command, which runs one call of the package
// inside a node (systemd's private socket only answers from there).
func buildProbe(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "probe")
	cmd := exec.Command("go", "build", "-o", out, "github.com/kata-deploy/kata-deploy/systemd/internal/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, b)
	}
	return out
}

// probeIn runs the probe in the node as a pod would and decodes its result.
func probeIn(t *testing.T, n *testbed.Node, bin string, args ...string) result.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := n.RunAsPod(ctx, bin, args...)
	assert.NilError(t, err, "probe %s", strings.Join(args, " "))
	var r result.Result
	assert.NilError(t, json.Unmarshal(out, &r), string(out))
	t.Logf("probe %s -> %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	return r
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	assert.NilError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	assert.NilError(t, os.WriteFile(path, []byte(data), 0o644))
}

// TestNode restarts real container runtime units under real systemd 252 in
// testbed nodes, through the private socket, from a child PID namespace of
// the node as a DaemonSet pod would.
func TestNode(t *testing.T) {
	testbed.Require(t)
	bin := buildProbe(t)
	for _, tc := range []struct {
		flavour testbed.Flavour
		config  string // a file the runtime reads, for restart-if-needed
		opts    []testbed.NodeOption
	}{
		{testbed.Containerd16, "/etc/containerd/config.toml", nil},
		{testbed.Containerd2, "/etc/containerd/config.toml", []testbed.NodeOption{
			testbed.WithFile("/etc/containerd/config.toml", []byte("version = 3\n"), 0o644)}},
		{testbed.CRIO, "/etc/crio/crio.conf.d/10-crio.conf", nil},
	} {
		t.Run(string(tc.flavour), func(t *testing.T) {
			n := testbed.StartNode(t, tc.flavour, tc.opts...)
			unit := n.RuntimeUnit()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()

			// Status, cross-checked with the system bus from outside.
			r := probeIn(t, n, bin, "status", unit)
			assert.Assert(t, r.Error == nil, r.Error)
			assert.Check(t, is.Equal(r.Status.ActiveState, "active"))
			before, err := n.ActiveEnterTimestamp(ctx, unit)
			assert.NilError(t, err)
			assert.Check(t, r.Status.ActiveEnter.Equal(before), "%s != %s", r.Status.ActiveEnter, before)

			// Restart: a new ActiveEnterTimestamp, seen from outside too.
			r = probeIn(t, n, bin, "-timeout", "60s", "restart", unit)
			assert.Assert(t, r.Error == nil, r.Error)
			after, err := n.ActiveEnterTimestamp(ctx, unit)
			assert.NilError(t, err)
			assert.Check(t, after.After(before), "ActiveEnterTimestamp did not move: %s -> %s", before, after)
			assert.Check(t, r.Status.ActiveEnter.Equal(after))
			assert.Check(t, is.Equal(r.Status.ActiveState, "active"))

			// Restart only if needed: the config written now -> restart;
			// the same config again (a retried installer) -> no restart.
			cfg := n.HostPath(tc.config)
			now := time.Now()
			assert.NilError(t, os.Chtimes(cfg, now, now))
			r = probeIn(t, n, bin, "restart-if-needed", unit, tc.config)
			assert.Assert(t, r.Error == nil, r.Error)
			assert.Check(t, r.Decision.Restarted, r.Decision.Reason)
			again, err := n.ActiveEnterTimestamp(ctx, unit)
			assert.NilError(t, err)
			assert.Check(t, again.After(after))
			r = probeIn(t, n, bin, "restart-if-needed", unit, tc.config)
			assert.Assert(t, r.Error == nil, r.Error)
			assert.Check(t, !r.Decision.Restarted, r.Decision.Reason)
			same, err := n.ActiveEnterTimestamp(ctx, unit)
			assert.NilError(t, err)
			assert.Check(t, same.Equal(again), "restarted although not needed")

			// A missing unit is a clear error; Exists says false.
			r = probeIn(t, n, bin, "restart", "k3s-agent.service")
			assert.Assert(t, r.Error != nil)
			assert.Check(t, r.Error.NotFound, r.Error.Message)
			assert.Check(t, is.Equal(r.Error.Message, "systemd: restart k3s-agent.service: unit not found (unit now not-found/inactive/dead)"))
			r = probeIn(t, n, bin, "exists", "k3s-agent.service")
			assert.Check(t, r.Error == nil && !*r.Exists)
			r = probeIn(t, n, bin, "exists", unit)
			assert.Check(t, r.Error == nil && *r.Exists)

			// A unit that fails to start: the job's result and the unit's
			// state, within the deadline.
			dropin := n.HostPath("/etc/systemd/system/" + unit + ".d/99-broken.conf")
			writeFile(t, dropin, "[Service]\nExecStartPre=\nExecStart=\nExecStart=/bin/false\n")
			r = probeIn(t, n, bin, "daemon-reload")
			assert.Assert(t, r.Error == nil, r.Error)
			r = probeIn(t, n, bin, "-timeout", "30s", "restart", unit)
			assert.Assert(t, r.Error != nil, "restart with a broken ExecStart succeeded")
			assert.Check(t, r.Error.JobFailed, r.Error.Message)
			assert.Check(t, is.Equal(r.Error.Result, "failed"))
			assert.Check(t, is.Equal(r.Error.Unit, unit))
			assert.Check(t, r.Error.ActiveState == "failed" || r.Error.ActiveState == "activating", r.Error.ActiveState)
			assert.Check(t, is.Contains(r.Error.Message, `systemd: restart `+unit+`: job result "failed" (unit now loaded/`))
			assert.Check(t, r.Elapsed < 30*time.Second)

			// Repaired: restart works again.
			assert.NilError(t, os.Remove(dropin))
			r = probeIn(t, n, bin, "daemon-reload")
			assert.Assert(t, r.Error == nil, r.Error)
			r = probeIn(t, n, bin, "-timeout", "60s", "restart", unit)
			assert.Assert(t, r.Error == nil, r.Error)
			assert.Check(t, is.Equal(r.Status.ActiveState, "active"))
		})
	}
}

// TestNodeSlowStartUnderWay: a runtime restarted by someone else (an
// installer killed while it waited for its restart) and slow to start is
// waited for, not restarted all over: the installer that runs next finds
// it active on the new config (issue 18).
func TestNodeSlowStartUnderWay(t *testing.T) {
	testbed.Require(t)
	bin := buildProbe(t)
	n := testbed.StartNode(t, testbed.Containerd16,
		testbed.WithFile("/etc/systemd/system/containerd.service.d/50-slow.conf", []byte("[Service]\nExecStartPre=/bin/sleep 8\n"), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := "/etc/containerd/config.toml"
	now := time.Now()
	assert.NilError(t, os.Chtimes(n.HostPath(cfg), now, now))
	_, err := n.Exec(ctx, "systemctl", "--no-block", "restart", "containerd.service")
	assert.NilError(t, err)
	time.Sleep(time.Second)
	r := probeIn(t, n, bin, "restart-if-needed", "containerd.service", cfg)
	assert.Assert(t, r.Error == nil, r.Error)
	assert.Check(t, !r.Decision.Restarted, "restarted over a start under way: %s", r.Decision.Reason)
	assert.Check(t, is.Equal(r.Status.ActiveState, "active"))
	assert.Check(t, r.Elapsed > 5*time.Second, "did not wait for the start: %s", r.Elapsed)
}

// TestNodeHangingStart shows the wait ends with the caller's deadline when
// systemd's job does not finish: a notify service that never notifies.
func TestNodeHangingStart(t *testing.T) {
	testbed.Require(t)
	bin := buildProbe(t)
	n := testbed.StartNode(t, testbed.Containerd16)
	dropin := n.HostPath("/etc/systemd/system/containerd.service.d/99-hang.conf")
	writeFile(t, dropin, "[Service]\nExecStartPre=\nExecStart=\nExecStart=/bin/sleep infinity\nTimeoutStartSec=infinity\n")
	r := probeIn(t, n, bin, "daemon-reload")
	assert.Assert(t, r.Error == nil, r.Error)
	r = probeIn(t, n, bin, "-timeout", "3s", "restart", "containerd.service")
	assert.Assert(t, r.Error != nil)
	assert.Check(t, r.Error.Deadline, r.Error.Message)
	assert.Check(t, is.Equal(r.Error.Result, ""))
	assert.Check(t, is.Equal(r.Error.ActiveState, "activating"))
	assert.Check(t, is.Equal(r.Error.SubState, "start"))
	assert.Check(t, r.Elapsed < 6*time.Second, r.Elapsed)
	assert.Check(t, is.Contains(r.Error.Message, "waiting for the job: context deadline exceeded (unit now loaded/activating/start)"))

	// Repaired: the pending start job is replaced by the restart, once
	// the restart has given it the time systemd gives a start (the
	// repaired unit's TimeoutStartSec, 90 s from its start, when systemd
	// fails it): a start under way may be a slow one, which a restart
	// must not start all over.
	assert.NilError(t, os.Remove(dropin))
	r = probeIn(t, n, bin, "daemon-reload")
	assert.Assert(t, r.Error == nil, r.Error)
	r = probeIn(t, n, bin, "-timeout", "150s", "restart", "containerd.service")
	assert.Assert(t, r.Error == nil, r.Error)
	assert.Check(t, is.Equal(r.Status.ActiveState, "active"))
	assert.Check(t, r.Elapsed > 60*time.Second, "restarted over a start under way after %s", r.Elapsed)
}
