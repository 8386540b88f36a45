package installer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/nodelabel/clientset"
	"github.com/kata-deploy/kata-deploy/systemd"
)

// The fakes stand in for the two things a unit test cannot have: the
// host's systemd and a runtime answering CRI. Everything else (config
// engines, payload, records, journal) is the real code on a temporary host
// root. Each fake records its calls in one ordered log, with the Node
// label writes and events of a fake API server, so that a test can assert
// the order of everything the installer did outside the host's files.

// callLog is the ordered record of the calls made to the fakes.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, fmt.Sprintf(format, args...))
}

func (l *callLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = nil
}

// list returns the calls, with a call repeated in a row (a poll) once.
func (l *callLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Compact(slices.Clone(l.calls))
}

// fakeSystemd is a systemd whose answers the test chooses; a nil function
// answers as a healthy systemd would.
type fakeSystemd struct {
	log             *callLog
	restartIfNeeded func(unit string) (systemd.Decision, error)
	restart         func(unit string) error
	exists          func(unit string) (bool, error)
}

var _ systemdClient = (*fakeSystemd)(nil)

func (f *fakeSystemd) RestartIfNeeded(_ context.Context, unit string, _ time.Time) (systemd.UnitStatus, systemd.Decision, error) {
	f.log.add("systemd RestartIfNeeded %s", unit)
	if f.restartIfNeeded == nil {
		return systemd.UnitStatus{ActiveState: "active"}, systemd.Decision{Restarted: true, Reason: "config written since start"}, nil
	}
	d, err := f.restartIfNeeded(unit)
	return systemd.UnitStatus{ActiveState: "active"}, d, err
}

func (f *fakeSystemd) Restart(_ context.Context, unit string) (systemd.UnitStatus, error) {
	f.log.add("systemd Restart %s", unit)
	if f.restart == nil {
		return systemd.UnitStatus{ActiveState: "active"}, nil
	}
	return systemd.UnitStatus{}, f.restart(unit)
}

func (f *fakeSystemd) Exists(_ context.Context, unit string) (bool, error) {
	f.log.add("systemd Exists %s", unit)
	if f.exists == nil {
		return true, nil
	}
	return f.exists(unit)
}

func (f *fakeSystemd) Close() error {
	f.log.add("systemd Close")
	return nil
}

// fakeCRI is a runtime's CRI socket. handlers answers CRI Status (nil: the
// runtime serves nothing but runc); Missing is worked out from it, as the
// real client does.
type fakeCRI struct {
	log      *callLog
	version  func() (string, error)
	handlers func() ([]string, error)
}

var _ criClient = (*fakeCRI)(nil)

func (f *fakeCRI) Version(context.Context) (string, error) {
	f.log.add("cri Version")
	if f.version == nil {
		return "containerd://1.7.22", nil
	}
	return f.version()
}

func (f *fakeCRI) served() ([]string, error) {
	if f.handlers == nil {
		return []string{"runc"}, nil
	}
	return f.handlers()
}

func (f *fakeCRI) Handlers(context.Context) ([]string, error) {
	f.log.add("cri Handlers")
	return f.served()
}

func (f *fakeCRI) Close() error {
	f.log.add("cri Close")
	return nil
}

// serving answers CRI Status with handlers.
func serving(handlers ...string) func() ([]string, error) {
	return func() ([]string, error) { return handlers, nil }
}

// notAnswering is a runtime whose CRI socket does not answer.
func notAnswering() ([]string, error) {
	return nil, errors.New("connection refused")
}

// withFakes makes c dial the fakes instead of the host's sockets.
func withFakes(c *Config, sd *fakeSystemd, rt *fakeCRI) *Config {
	c.dialSystemd = func(context.Context, string) (systemdClient, error) { return sd, nil }
	c.dialCRI = func(string) (criClient, error) { return rt, nil }
	return c
}

const nodeName = "node-1"

type fakeClientset = fake.Clientset

// fakeNode is a Node on a fake API server: ready, reporting containerd
// 1.7.22 and serving handlers, with labels. Its label writes and events go
// to log.
func fakeNode(t *testing.T, log *callLog, labels map[string]string, handlers ...string) (*fake.Clientset, *nodelabel.Client) {
	t.Helper()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName, UID: "uid-1", Labels: labels},
		Status: corev1.NodeStatus{
			NodeInfo:   corev1.NodeSystemInfo{ContainerRuntimeVersion: "containerd://1.7.22"},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, h := range handlers {
		n.Status.RuntimeHandlers = append(n.Status.RuntimeHandlers, corev1.NodeRuntimeHandler{Name: h})
	}
	cs := fake.NewClientset(n)
	cs.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		var p struct {
			Metadata struct {
				Labels map[string]*string `json:"labels"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(a.(k8stesting.PatchAction).GetPatch(), &p); err != nil {
			t.Errorf("label patch: %v", err)
		}
		var parts []string
		for k, v := range p.Metadata.Labels {
			if v == nil {
				parts = append(parts, k+"-")
			} else {
				parts = append(parts, k+"="+*v)
			}
		}
		sort.Strings(parts)
		log.add("label %s", strings.Join(parts, " "))
		return false, nil, nil
	})
	cs.PrependReactor("create", "events", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		log.add("event %s", a.(k8stesting.CreateAction).GetObject().(*corev1.Event).Reason)
		return false, nil, nil
	})
	c, err := nodelabel.New(clientset.API(cs), nodeName)
	assert.NilError(t, err)
	return cs, c
}

// setReady sets the fake Node's Ready condition.
func setReady(t *testing.T, cs *fake.Clientset, status corev1.ConditionStatus) {
	t.Helper()
	ctx := context.Background()
	n, err := cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	assert.NilError(t, err)
	n.Status.Conditions[0].Status = status
	_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	assert.NilError(t, err)
}

// nodeLabels reads the fake Node's labels.
func nodeLabels(t *testing.T, cs *fake.Clientset) map[string]string {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
	assert.NilError(t, err)
	return n.Labels
}

// eventMessage returns the message of the Node's event for reason.
func eventMessage(t *testing.T, cs *fake.Clientset, reason nodelabel.Reason) string {
	t.Helper()
	evs, err := cs.CoreV1().Events(nodelabel.EventNamespace).List(context.Background(), metav1.ListOptions{})
	assert.NilError(t, err)
	for _, e := range evs.Items {
		if e.Reason == string(reason) {
			return e.Message
		}
	}
	return ""
}

// hostDiff lists what changed in a host tree: paths added, removed and
// changed (sorted).
func hostDiff(before, after map[string]string) (added, removed, changed []string) {
	for p, v := range after {
		old, ok := before[p]
		switch {
		case !ok:
			added = append(added, p)
		case old != v:
			changed = append(changed, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			removed = append(removed, p)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	sort.Strings(changed)
	return added, removed, changed
}

// mustRoot opens the host root dir as an operation does.
func mustRoot(t *testing.T, dir string) *hostfs.Root {
	t.Helper()
	root, err := hostfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return root
}
