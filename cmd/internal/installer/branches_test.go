package installer

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kata-deploy/kata-deploy/cmd/internal/cleanup"
	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/internal/noderecord"
	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/systemd"
)

// The failure branches of Install, Uninstall and Cleanup, each run on a
// temporary host with the real engines and payload code, and fakes for
// systemd, the runtime's CRI socket and the API server.

const (
	kataLabel    = nodelabel.DefaultDomain + "/" + nodelabel.KataLabelName
	runtimeLabel = nodelabel.DefaultDomain + "/" + nodelabel.RuntimeLabelName
	recordFile   = "var/lib/kata-deploy/install.json"
)

// recordLeft is what a record left on a fresh host adds to it.
var recordLeft = []string{"var/", "var/lib/", "var/lib/kata-deploy/", recordFile}

var errJob = errors.New(`job for containerd.service: result "failed"`)

// hookHandler calls fn once when the installer logs msg: a way to act at
// a point between two of its steps.
type hookHandler struct {
	msg   string
	fn    func()
	fired *bool
}

func (h hookHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h hookHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg && !*h.fired {
		*h.fired = true
		h.fn()
	}
	return nil
}
func (h hookHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h hookHandler) WithGroup(string) slog.Handler      { return h }

func recordState(t *testing.T, h string) noderecord.State {
	t.Helper()
	root, err := hostfs.New(h)
	assert.NilError(t, err)
	rec, err := noderecord.Load(root, "")
	assert.NilError(t, err)
	if rec == nil {
		return ""
	}
	return rec.State
}

func TestInstallBranches(t *testing.T) {
	installed := []string{"event KataInstallStarted"}
	// A rollback after a failed restart or verification, as the calls show
	// it: config back (no call), restart, the runtime answers, payload gone.
	rollback := []string{"systemd Restart containerd.service", "systemd Close", "cri Handlers", "cri Close"}
	// A restart and a verification: the systemd connection stays open
	// while the runtime is asked.
	verified := []string{"systemd RestartIfNeeded containerd.service", "cri Handlers", "cri Close", "systemd Close"}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		config   string // containerd's config; containerdConfig when empty
		shims    []string
		payload  func(t *testing.T) string
		restart  bool
		sd       fakeSystemd
		cri      fakeCRI
		noNode   bool
		hook     func(h string) // run when the payload is installed
		notReady bool           // the Node is not Ready
		timesOut bool           // the verification is expected to time out
		// stopAfter cancels the install's context after this long: the pod
		// stopped mid-install. What it wrote stays, for the next run.
		stopAfter time.Duration

		wantErr     []string
		wantState   nodelabel.KataState
		wantCalls   []string
		wantAdded   []string // host paths the run leaves that were not there
		wantChanged []string
		wantRecord  noderecord.State
		wantLabel   string
	}{
		{
			name:      "plan refused: nothing written",
			config:    "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"\n",
			restart:   true,
			wantErr:   []string{"/etc/containerd/config.toml"},
			wantCalls: cat(installed, []string{"event KataInstallFailed"}),
		},
		{
			name:      "payload install fails: record forgotten",
			payload:   func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing") },
			restart:   true,
			wantErr:   []string{"install payload:", "missing"},
			wantCalls: cat(installed, []string{"event KataInstallFailed"}),
		},
		{
			name:      "payload lacks a shim: refused before the payload is written",
			shims:     []string{"qemu", "fc"},
			restart:   true,
			wantErr:   []string{"has no Kata config for shim fc", "pick --shims from those it has: qemu"},
			wantCalls: cat(installed, []string{"event KataInstallFailed"}),
		},
		{
			name:    "apply fails on a config edited since the plan: payload undone, record forgotten",
			restart: true,
			hook: func(h string) {
				f, err := os.OpenFile(filepath.Join(h, "etc/containerd/config.toml"), os.O_APPEND|os.O_WRONLY, 0)
				if err == nil {
					_, err = f.WriteString("# edited meanwhile\n")
					f.Close()
				}
				if err != nil {
					panic(err)
				}
			},
			wantErr:     []string{"register Kata with containerd: /etc/containerd/config.toml: config changed since it was planned: re-plan"},
			wantCalls:   cat(installed, []string{"event KataInstallFailed"}),
			wantChanged: []string{"etc/containerd/config.toml"},
		},
		{
			name:      "restart fails: config back, runtime restarted again, payload undone, no label",
			restart:   true,
			sd:        fakeSystemd{restartIfNeeded: func(string) (systemd.Decision, error) { return systemd.Decision{}, errJob }},
			wantErr:   []string{errJob.Error()},
			wantCalls: cat(installed, []string{"systemd RestartIfNeeded containerd.service", "systemd Close"}, rollback, []string{"event KataInstallFailed"}),
		},
		{
			name:     "verification times out: config back, runtime restarted again, payload undone, no label",
			restart:  true,
			cri:      fakeCRI{handlers: serving("runc", "kata")},
			timesOut: true,
			wantErr:  []string{"the runtime on /run/containerd/containerd.sock does not serve handlers kata-qemu"},
			wantCalls: cat(installed, verified,
				rollback, []string{"event KataInstallFailed"}),
		},
		{
			// The runtime serves the handlers: the config is good, and the
			// Node catching up is waited for, never a reason to undo it.
			name:       "the Node does not become ready: waited for, not rolled back; the stop leaves it installed",
			restart:    true,
			cri:        fakeCRI{handlers: serving("runc", "kata", "kata-qemu")},
			notReady:   true,
			timesOut:   true,
			stopAfter:  time.Second,
			wantErr:    []string{"install interrupted: before labelling the node: node node-1: not ready for Kata: Ready=False"},
			wantCalls:  cat(installed, verified),
			wantRecord: noderecord.Installed,
		},
		{
			name:       "stopped while verifying: not rolled back, no restart, the record says installing",
			restart:    true,
			cri:        fakeCRI{handlers: serving("runc")},
			stopAfter:  time.Second,
			wantErr:    []string{"install interrupted: the config stays applied for the next run to verify", "does not serve handlers kata, kata-qemu"},
			wantCalls:  cat(installed, verified),
			wantRecord: noderecord.Installing,
		},
		{
			name:    "the rollback's own restart fails: both errors, the record stays",
			restart: true,
			sd: fakeSystemd{
				restartIfNeeded: func(string) (systemd.Decision, error) { return systemd.Decision{}, errJob },
				restart:         func(string) error { return errors.New("unit containerd.service: result \"timeout\"") },
			},
			wantErr: []string{errJob.Error(), "rollback: unit containerd.service: result \"timeout\""},
			wantCalls: cat(installed, []string{"systemd RestartIfNeeded containerd.service", "systemd Close",
				"systemd Restart containerd.service", "systemd Close", "event KataInstallFailed"}),
			wantAdded:  recordLeft,
			wantRecord: noderecord.Installing,
		},
		{
			name:     "the runtime does not answer after the rollback: both errors, the record stays",
			restart:  true,
			cri:      fakeCRI{handlers: notAnswering},
			timesOut: true,
			wantErr: []string{
				"the runtime does not answer on /run/containerd/containerd.sock: connection refused",
				"rollback: after the restart: the runtime does not answer on /run/containerd/containerd.sock: connection refused",
			},
			wantCalls: cat(installed, verified,
				rollback, []string{"event KataInstallFailed"}),
			wantAdded:  recordLeft,
			wantRecord: noderecord.Installing,
		},
		{
			name:       "installed: restarted, verified, labelled true",
			restart:    true,
			cri:        fakeCRI{handlers: serving("runc", "kata", "kata-qemu")},
			wantState:  nodelabel.KataInstalled,
			wantCalls:  cat(installed, verified, []string{"label " + kataLabel + "=true", "event KataInstallSucceeded"}),
			wantRecord: noderecord.Installed,
			wantLabel:  "true",
		},
		{
			name:       "--restart=false: no systemd, labelled waiting-restart",
			wantState:  nodelabel.KataWaitingRestart,
			wantCalls:  cat(installed, []string{"cri Handlers", "cri Close", "label " + kataLabel + "=waiting-restart", "event KataWaitingForRestart"}),
			wantRecord: noderecord.PendingRestart,
			wantLabel:  "waiting-restart",
		},
		{
			name:       "--restart=false on a runtime restarted meanwhile: verified, labelled true",
			cri:        fakeCRI{handlers: serving("runc", "kata", "kata-qemu")},
			wantState:  nodelabel.KataInstalled,
			wantCalls:  cat(installed, []string{"cri Handlers", "cri Close", "cri Handlers", "cri Close", "label " + kataLabel + "=true", "event KataInstallSucceeded"}),
			wantRecord: noderecord.Installed,
			wantLabel:  "true",
		},
		{
			name:      "the version cannot be told: nothing written",
			noNode:    true,
			cri:       fakeCRI{version: func() (string, error) { return "", errors.New("connection refused") }},
			wantErr:   []string{"cannot tell the containerd version", "set the runtime version explicitly: connection refused"},
			wantCalls: []string{"cri Version", "cri Close"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.stopAfter > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.stopAfter)
				defer cancel()
			}
			cfgText := tc.config
			if cfgText == "" {
				cfgText = containerdConfig
			}
			h := host(t)
			assert.NilError(t, os.WriteFile(filepath.Join(h, "etc/containerd/config.toml"), []byte(cfgText), 0o644))
			shims := tc.shims
			if shims == nil {
				shims = []string{"qemu"}
			}
			pl := ""
			if tc.payload != nil {
				pl = tc.payload(t)
			} else {
				pl = payload(t, "qemu")
			}
			var log callLog
			sd, rt := tc.sd, tc.cri
			sd.log, rt.log = &log, &log
			c := withFakes(filesOnly(h, pl, shims...), &sd, &rt)
			c.RuntimeVersion = ""
			c.Restart = tc.restart
			// Long enough for the fake API server's watch; short where the
			// case waits for it to pass.
			c.VerifyTimeout = 10 * time.Second
			if tc.timesOut {
				c.VerifyTimeout = 300 * time.Millisecond
			}
			if tc.hook != nil {
				fired := false
				c.Log = slog.New(hookHandler{msg: "payload installed", fn: func() { tc.hook(h) }, fired: &fired})
				defer func() { assert.Check(t, fired, "the hook never ran") }()
			}
			var labels func() map[string]string
			if !tc.noNode {
				cs, node := fakeNode(t, &log, nil)
				if tc.notReady {
					setReady(t, cs, corev1.ConditionFalse)
				}
				c.Node = node
				labels = func() map[string]string { return nodeLabels(t, cs) }
			}
			before := hosttest.Snapshot(t, h)

			state, err := c.Install(ctx)

			for _, want := range tc.wantErr {
				assert.Check(t, is.ErrorContains(err, want))
			}
			if tc.wantErr == nil {
				assert.Check(t, is.Nil(err))
			}
			assert.Check(t, is.Equal(state, tc.wantState), "err: %v", err)
			assert.Check(t, is.DeepEqual(log.list(), tc.wantCalls))
			added, removed, changed := hostDiff(before, hosttest.Snapshot(t, h))
			if tc.wantState != "" || tc.stopAfter > 0 {
				// Installed: the payload, the record and the config edit.
				assert.Check(t, is.Contains(added, recordFile))
				assert.Check(t, is.Contains(added, "opt/kata/bin/containerd-shim-kata-v2"))
				tc.wantChanged = []string{"etc/containerd/config.toml"}
			} else {
				assert.Check(t, is.DeepEqual(added, tc.wantAdded), "added on the host")
			}
			assert.Check(t, is.Len(removed, 0), "removed from the host")
			assert.Check(t, is.DeepEqual(changed, tc.wantChanged), "changed on the host")
			assert.Check(t, is.Equal(recordState(t, h), tc.wantRecord))
			if labels != nil {
				assert.Check(t, is.Equal(labels()[kataLabel], tc.wantLabel))
			}
		})
	}
}

// installedNode is a host with Kata installed through the fakes (restart,
// verification and label passed), and the host as it was before.
type installedNode struct {
	host     string
	pristine map[string]string
	log      *callLog
	cs       *fakeClientset
	node     *nodelabel.Client
}

func installNode(t *testing.T, withNode bool, labels map[string]string) *installedNode {
	t.Helper()
	in := &installedNode{host: host(t), log: &callLog{}}
	in.pristine = hosttest.Snapshot(t, in.host)
	c := withFakes(filesOnly(in.host, payload(t, "qemu"), "qemu"), &fakeSystemd{log: in.log}, &fakeCRI{log: in.log, handlers: serving("runc", "kata", "kata-qemu")})
	c.Restart = true
	c.VerifyTimeout = 10 * time.Second
	if withNode {
		in.cs, in.node = fakeNode(t, in.log, labels)
		c.Node = in.node
		c.RuntimeVersion = ""
	}
	state, err := c.Install(context.Background())
	assert.NilError(t, err)
	assert.Assert(t, is.Equal(state, nodelabel.KataInstalled))
	in.log.reset()
	return in
}

// config is a Config on the node with the fakes given, as the uninstall
// and the cleanup get it: no runtime version, shims or prefix.
func (in *installedNode) config(sd *fakeSystemd, rt *fakeCRI) *Config {
	sd.log, rt.log = in.log, in.log
	c := withFakes(&Config{HostRoot: in.host, Runtime: "auto", Restart: true, VerifyTimeout: 10 * time.Second}, sd, rt)
	if in.node != nil {
		c.Node = in.node
	}
	return c
}

func TestUninstallBranches(t *testing.T) {
	served := fakeCRI{handlers: serving("runc", "kata", "kata-qemu")}
	crash := fakeSystemd{restart: func(string) error { return errJob }}
	for _, tc := range []struct {
		name      string
		withNode  bool
		noRestart bool
		crashed   bool // an earlier uninstall stopped after restoring the config
		// nodeReports is what the Node reports of its runtime at uninstall.
		nodeReports string
		sd          fakeSystemd
		cri         fakeCRI

		wantErr     string
		wantCalls   []string
		wantPayload bool // the payload is still there
		wantRecord  noderecord.State
	}{
		{
			name:     "uninstalled: restart, payload gone, record kept for the cleanup",
			withNode: true,
			cri:      served,
			wantCalls: []string{"event KataUninstallStarted", "cri Handlers", "cri Close",
				"systemd Restart containerd.service", "systemd Close", "event KataUninstallSucceeded"},
			wantRecord: noderecord.Uninstalled,
		},
		{
			name:      "without an API server: nothing left, record included",
			cri:       served,
			wantCalls: []string{"cri Handlers", "cri Close", "systemd Restart containerd.service", "systemd Close"},
		},
		{
			// The kubelet could not ask the restarting runtime: the
			// uninstall works from the record all the same.
			name:        "the Node reports containerd://Unknown: uninstalled from the record",
			withNode:    true,
			nodeReports: "containerd://Unknown",
			cri:         served,
			wantCalls: []string{"event KataUninstallStarted", "cri Handlers", "cri Close",
				"systemd Restart containerd.service", "systemd Close", "event KataUninstallSucceeded"},
			wantRecord: noderecord.Uninstalled,
		},
		{
			name:     "restart fails: config back, payload and record kept",
			withNode: true,
			cri:      served,
			sd:       crash,
			wantErr:  errJob.Error(),
			wantCalls: []string{"event KataUninstallStarted", "cri Handlers", "cri Close",
				"systemd Restart containerd.service", "systemd Close", "event KataUninstallFailed"},
			wantPayload: true,
			wantRecord:  noderecord.Uninstalling,
		},
		{
			name: "the runtime does not answer: the version comes from the record, and it is restarted",
			cri: fakeCRI{version: func() (string, error) { return "", errors.New("connection refused") },
				handlers: notAnswering},
			wantCalls: []string{"cri Handlers", "cri Close", "systemd Restart containerd.service", "systemd Close"},
		},
		{
			name:       "--restart=false: no systemd, the runtime is not asked",
			withNode:   true,
			noRestart:  true,
			cri:        served,
			wantCalls:  []string{"event KataUninstallStarted", "event KataUninstallSucceeded"},
			wantRecord: noderecord.Uninstalled,
		},
		{
			name:      "repeated after a crash before the restart: restarts",
			crashed:   true,
			cri:       served,
			wantCalls: []string{"cri Handlers", "cri Close", "systemd Restart containerd.service", "systemd Close"},
		},
		{
			name:      "repeated after a crash after the restart: does not restart again",
			crashed:   true,
			wantCalls: []string{"cri Handlers", "cri Close"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			in := installNode(t, tc.withNode, nil)
			if tc.crashed {
				sd, rt := crash, served
				err := in.config(&sd, &rt).Uninstall(ctx)
				assert.Assert(t, is.ErrorContains(err, errJob.Error()))
				assert.Assert(t, is.Equal(recordState(t, in.host), noderecord.Uninstalling))
				in.log.reset()
			}
			if tc.nodeReports != "" {
				n, err := in.cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
				assert.NilError(t, err)
				n.Status.NodeInfo.ContainerRuntimeVersion = tc.nodeReports
				_, err = in.cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
				assert.NilError(t, err)
			}
			sd, rt := tc.sd, tc.cri
			c := in.config(&sd, &rt)
			c.Restart = !tc.noRestart

			err := c.Uninstall(ctx)

			if tc.wantErr == "" {
				assert.Check(t, is.Nil(err))
			} else {
				assert.Check(t, is.ErrorContains(err, tc.wantErr))
			}
			assert.Check(t, is.DeepEqual(in.log.list(), tc.wantCalls))
			added, removed, changed := hostDiff(in.pristine, hosttest.Snapshot(t, in.host))
			assert.Check(t, is.Len(removed, 0), "removed from the host")
			assert.Check(t, is.Len(changed, 0), "the runtime config is not back as it was")
			var want []string
			if tc.wantRecord != "" {
				want = recordLeft
			}
			if tc.wantPayload {
				assert.Check(t, is.Contains(added, "opt/kata/bin/containerd-shim-kata-v2"))
			} else {
				assert.Check(t, is.DeepEqual(added, want), "left on the host")
			}
			assert.Check(t, is.Equal(recordState(t, in.host), tc.wantRecord))
			if in.cs != nil {
				assert.Check(t, is.Equal(nodeLabels(t, in.cs)[kataLabel], "true"), "the uninstall's caller relabels the node, not the uninstall")
			}
		})
	}
}

// cleanup is the kata-cleanup command's Config on the node with the fake
// systemd given. Its tests live here because the cleanup follows a real
// uninstall, which only this package can run.
func (in *installedNode) cleanup(sd *fakeSystemd) *cleanup.Config {
	sd.log = in.log
	return &cleanup.Config{HostRoot: in.host, Runtime: "auto", Restart: true, Node: in.node,
		Dial: func(context.Context, string) (cleanup.Systemd, error) { return sd, nil }}
}

func TestCleanupBranches(t *testing.T) {
	labels := map[string]string{kataLabel: "cleanup", runtimeLabel: "containerd"}
	for _, tc := range []struct {
		name      string
		installed bool // the uninstall never ran
		noRestart bool
		sd        fakeSystemd

		wantErr    string
		wantCalls  []string
		wantLabels bool // the labels are still there
		wantEvent  string
	}{
		{
			name: "restarts the runtime, then the kubelet; labels and record go",
			wantCalls: []string{"systemd Exists containerd.service", "systemd Restart containerd.service", "systemd Close",
				"systemd Exists kubelet.service", "systemd Restart kubelet.service", "systemd Close",
				"label " + runtimeLabel + "- " + kataLabel + "-", "event KataCleanupSucceeded"},
			wantEvent: "restarted: containerd.service, kubelet.service",
		},
		{
			name: "a unit that does not exist is not restarted",
			sd:   fakeSystemd{exists: func(unit string) (bool, error) { return unit != "kubelet.service", nil }},
			wantCalls: []string{"systemd Exists containerd.service", "systemd Restart containerd.service", "systemd Close",
				"systemd Exists kubelet.service", "systemd Close",
				"label " + runtimeLabel + "- " + kataLabel + "-", "event KataCleanupSucceeded"},
			wantEvent: "restarted: containerd.service",
		},
		{
			name:       "the runtime's restart fails: labels and record kept",
			sd:         fakeSystemd{restart: func(string) error { return errJob }},
			wantErr:    errJob.Error(),
			wantCalls:  []string{"systemd Exists containerd.service", "systemd Restart containerd.service", "systemd Close", "event KataCleanupFailed"},
			wantLabels: true,
		},
		{
			name:       "systemd cannot tell whether the runtime unit exists: labels and record kept",
			sd:         fakeSystemd{exists: func(unit string) (bool, error) { return false, errors.New("dbus: connection reset") }},
			wantErr:    "dbus: connection reset",
			wantCalls:  []string{"systemd Exists containerd.service", "systemd Close", "event KataCleanupFailed"},
			wantLabels: true,
		},
		{
			name:      "--restart=false: labels and record go, nothing restarted",
			noRestart: true,
			wantCalls: []string{"label " + runtimeLabel + "- " + kataLabel + "-", "event KataCleanupSucceeded"},
			wantEvent: "restarted: nothing",
		},
		{
			name:       "refuses a node Kata is still installed on",
			installed:  true,
			wantErr:    "Kata is still installed in /opt/kata (installed, recorded in /var/lib/kata-deploy/install.json): its uninstall did not finish",
			wantCalls:  []string{"event KataCleanupFailed"},
			wantLabels: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			in := installNode(t, true, labels)
			if !tc.installed {
				sd, rt := fakeSystemd{}, fakeCRI{}
				assert.NilError(t, in.config(&sd, &rt).Uninstall(ctx))
				// installer.Run marks the node for the cleanup.
				assert.NilError(t, in.node.SetKataState(ctx, nodelabel.KataCleanup))
				in.log.reset()
			}
			before := hosttest.Snapshot(t, in.host)
			sd := tc.sd
			c := in.cleanup(&sd)
			c.Restart = !tc.noRestart

			err := c.Run(ctx)

			if tc.wantErr == "" {
				assert.Check(t, is.Nil(err))
			} else {
				assert.Check(t, is.ErrorContains(err, tc.wantErr))
			}
			assert.Check(t, is.DeepEqual(in.log.list(), tc.wantCalls))
			got := nodeLabels(t, in.cs)
			_, hasKata := got[kataLabel]
			_, hasRuntime := got[runtimeLabel]
			assert.Check(t, is.Equal(hasKata, tc.wantLabels))
			assert.Check(t, is.Equal(hasRuntime, tc.wantLabels))
			after := hosttest.Snapshot(t, in.host)
			if tc.wantErr != "" {
				assert.Check(t, is.DeepEqual(after, before), "a failed cleanup changed the host")
			} else {
				assert.Check(t, is.DeepEqual(after, in.pristine), "the cleanup left something behind")
				assert.Check(t, is.Contains(eventMessage(t, in.cs, nodelabel.ReasonCleanupSucceeded), tc.wantEvent))
			}
		})
	}
}

// TestFailedReinstallRestoresThePreviousInstall: a second install (here
// one more shim) whose restart fails leaves the node as the first install
// left it: the rollback takes out this run's config and puts the first
// install's back, journal included.
func TestFailedReinstallRestoresThePreviousInstall(t *testing.T) {
	ctx := context.Background()
	h := host(t)
	pl := payload(t, "qemu", "clh")
	var log callLog
	c := withFakes(filesOnly(h, pl, "qemu"), &fakeSystemd{log: &log}, &fakeCRI{log: &log, handlers: serving("kata", "kata-qemu")})
	c.Restart = true
	_, err := c.Install(ctx)
	assert.NilError(t, err)
	before := hosttest.Snapshot(t, h)

	failing := &fakeSystemd{log: &log, restartIfNeeded: func(string) (systemd.Decision, error) { return systemd.Decision{}, errJob }}
	c = withFakes(filesOnly(h, pl, "qemu", "clh"), failing, &fakeCRI{log: &log, handlers: serving("kata", "kata-qemu")})
	c.Restart = true
	_, err = c.Install(ctx)
	assert.Check(t, is.ErrorContains(err, errJob.Error()))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, h), before), "the failed re-install did not restore the first install")
}
