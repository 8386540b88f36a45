package nodelabel_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
	"github.com/kata-deploy/kata-deploy/nodelabel"
)

const (
	runtimeKey = "kata-containers.io/container-runtime"
	kataKey    = "kata-containers.io/kata-runtime"
)

// TestAPIServer runs the package against a real kube-apiserver (one for all
// subtests: it takes a few seconds to start).
func TestAPIServer(t *testing.T) {
	cp := testbed.StartControlPlane(t)
	admin := cp.AdminClient(t)
	t.Run("RuntimeLabeler", func(t *testing.T) { testRuntimeLabeler(t, cp, admin) })
	t.Run("KataState", func(t *testing.T) { testKataState(t, cp, admin) })
	t.Run("Domain", func(t *testing.T) { testDomain(t, cp, admin) })
	t.Run("Events", func(t *testing.T) { testEvents(t, cp, admin) })
	t.Run("WaitReady", func(t *testing.T) { testWaitReady(t, cp, admin) })
	t.Run("DaemonSetTargetsNode", func(t *testing.T) { testDaemonSetTargetsNode(t, cp, admin) })
	t.Run("RBAC", func(t *testing.T) { testRBAC(t, cp, admin) })
}

// newClient returns a Client over nodelabel's own REST API for cfg.
func newClient(t *testing.T, cfg *rest.Config, node string, opts ...nodelabel.Option) *nodelabel.Client {
	t.Helper()
	api, err := nodelabel.NewAPI(cfg)
	assert.NilError(t, err)
	c, err := nodelabel.New(api, node, append([]nodelabel.Option{nodelabel.WithLogger(testLogger(t))}, opts...)...)
	assert.NilError(t, err)
	return c
}

func testRuntimeLabeler(t *testing.T, cp *testbed.ControlPlane, admin kubernetes.Interface) {
	createNode(t, admin, "rl-1", "containerd://1.6.20~ds1", map[string]string{"example.com/keep": "me"})
	createNode(t, admin, "rl-other", "cri-o://1.34.0", nil) // another node: must not be touched
	setReady(t, admin, "rl-other", corev1.ConditionTrue)
	counter := newRequestCounter()
	const settleTime = 2 * time.Second
	stop := run(t, newClient(t, counter.wrap(cp.AdminConfig()), "rl-1", nodelabel.WithSettle(settleTime)).RunRuntimeLabeler)

	// A registered Node that is not Ready yet is not labelled.
	settle()
	assert.Check(t, is.Equal(counter.writes(), 0), counter)
	setReady(t, admin, "rl-1", corev1.ConditionTrue)

	waitLabels(t, admin, "rl-1", "runtime label set", hasLabel(runtimeKey, "containerd"))
	settle()
	assert.Check(t, is.Equal(counter.get("PATCH nodes"), 1), counter)
	assert.Check(t, is.Equal(counter.writes(), 1), counter)

	// Steady state: status updates that do not change the runtime (the
	// kubelet's heartbeats) cause no writes.
	for range 5 {
		setReady(t, admin, "rl-1", corev1.ConditionTrue)
	}
	settle()
	assert.Check(t, is.Equal(counter.writes(), 1), counter)

	// Someone removes the label: it comes back, with one write.
	patchLabels(t, admin, "rl-1", `{"metadata":{"labels":{"`+runtimeKey+`":null}}}`)
	waitLabels(t, admin, "rl-1", "runtime label restored", hasLabel(runtimeKey, "containerd"))
	settle()
	assert.Check(t, is.Equal(counter.writes(), 2), counter)

	// Someone sets it wrong: corrected, once the settle time has passed.
	patchLabels(t, admin, "rl-1", `{"metadata":{"labels":{"`+runtimeKey+`":"crio"}}}`)
	waitLabels(t, admin, "rl-1", "runtime label corrected", hasLabel(runtimeKey, "containerd"))

	// Transients, however long they last, change nothing: the runtime
	// restarting (the kubelet cannot ask its version), the Node NotReady.
	writes := counter.writes()
	updateStatus(t, admin, "rl-1", func(s *corev1.NodeStatus) { s.NodeInfo.ContainerRuntimeVersion = "containerd://Unknown" })
	setReady(t, admin, "rl-1", corev1.ConditionFalse)
	updateStatus(t, admin, "rl-1", func(s *corev1.NodeStatus) { s.NodeInfo.ContainerRuntimeVersion = "cri-o://1.34.0" })
	time.Sleep(settleTime + time.Second)
	assert.Check(t, is.Equal(counter.writes(), writes), "a transient changed the label: %s", counter)
	waitLabels(t, admin, "rl-1", "runtime label kept through transients", hasLabel(runtimeKey, "containerd"))

	// The runtime changes for good: the label follows after the settle time.
	changed := time.Now()
	setReady(t, admin, "rl-1", corev1.ConditionTrue)
	waitLabels(t, admin, "rl-1", "runtime label follows runtime", hasLabel(runtimeKey, "crio"))
	assert.Check(t, time.Since(changed) >= settleTime, "followed after %s, before the settle time", time.Since(changed))

	// An unsupported runtime: no label, so no installer selects the node.
	updateStatus(t, admin, "rl-1", func(s *corev1.NodeStatus) { s.NodeInfo.ContainerRuntimeVersion = "docker://27.0.1" })
	waitLabels(t, admin, "rl-1", "runtime label removed", noLabel(runtimeKey))

	// The node is deleted and registered again (k3s, rke2): labelled again.
	deleteNode(t, admin, "rl-1")
	createNode(t, admin, "rl-1", "containerd://2.2.9", nil)
	setReady(t, admin, "rl-1", corev1.ConditionTrue)
	labels := waitLabels(t, admin, "rl-1", "runtime label after re-registration", hasLabel(runtimeKey, "containerd"))
	assert.Check(t, is.Equal(labels["kubernetes.io/hostname"], "rl-1"))

	assert.NilError(t, stop())
	other, err := admin.CoreV1().Nodes().Get(context.Background(), "rl-other", metav1.GetOptions{})
	assert.NilError(t, err)
	_, has := other.Labels[runtimeKey]
	assert.Check(t, !has, "the labeler touched another node")
	// Only its own node was listed and watched: every LIST and WATCH
	// carried the field selector.
	assert.Check(t, counter.get("LIST nodes") >= 1, counter)
	assert.Check(t, counter.get("WATCH nodes") >= 1, counter)
	assert.Check(t, is.Equal(counter.get("UNSELECTED LIST nodes")+counter.get("UNSELECTED WATCH nodes"), 0), counter)
}

func testKataState(t *testing.T, cp *testbed.ControlPlane, admin kubernetes.Interface) {
	createNode(t, admin, "ks-1", "containerd://1.6.20", map[string]string{"example.com/keep": "me", runtimeKey: "containerd"})
	counter := newRequestCounter()
	cfg := counter.wrap(cp.AdminConfig())
	c := newClient(t, cfg, "ks-1")
	ctx := context.Background()

	assert.NilError(t, c.SetKataState(ctx, nodelabel.KataInstalled))
	waitLabels(t, admin, "ks-1", "kata label true", hasLabel(kataKey, "true"))
	assert.NilError(t, c.SetKataState(ctx, nodelabel.KataInstalled))
	assert.Check(t, is.Equal(counter.writes(), 1), "a second SetKataState wrote: %s", counter)

	stop := run(t, func(ctx context.Context) error { return c.KeepKataState(ctx, nodelabel.KataInstalled) })
	settle()
	assert.Check(t, is.Equal(counter.writes(), 1), "the keeper wrote a label that was right: %s", counter)

	// A kubelet re-registration that replaces the labels wholesale.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := admin.CoreV1().Nodes().Get(ctx, "ks-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Labels = map[string]string{"kubernetes.io/hostname": "ks-1", "example.com/keep": "me"}
		_, err = admin.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
	assert.NilError(t, err)
	waitLabels(t, admin, "ks-1", "kata label restored", hasLabel(kataKey, "true"))

	// The Node deleted and created again.
	deleteNode(t, admin, "ks-1")
	createNode(t, admin, "ks-1", "containerd://1.6.20", nil)
	waitLabels(t, admin, "ks-1", "kata label after re-creation", hasLabel(kataKey, "true"))
	assert.NilError(t, stop())

	// An install whose runtime was not restarted: RuntimeClasses select
	// "true", so the node must leave it for "waiting-restart".
	assert.NilError(t, c.SetKataState(ctx, nodelabel.KataWaitingRestart))
	waitLabels(t, admin, "ks-1", "kata label waiting-restart", hasLabel(kataKey, "waiting-restart"))
	assert.NilError(t, c.SetKataState(ctx, nodelabel.KataInstalled))
	waitLabels(t, admin, "ks-1", "kata label true after the later run", hasLabel(kataKey, "true"))

	// Uninstall, then cleanup: only our labels change.
	patchLabels(t, admin, "ks-1", `{"metadata":{"labels":{"example.com/keep":"me","`+runtimeKey+`":"containerd"}}}`)
	assert.NilError(t, c.SetKataState(ctx, nodelabel.KataCleanup))
	waitLabels(t, admin, "ks-1", "kata label cleanup", hasLabel(kataKey, "cleanup"))
	before := counter.writes()
	assert.NilError(t, c.RemoveLabels(ctx))
	labels := waitLabels(t, admin, "ks-1", "labels removed", func(l map[string]string) bool {
		return noLabel(kataKey)(l) && noLabel(runtimeKey)(l)
	})
	assert.Check(t, is.DeepEqual(labels, map[string]string{"kubernetes.io/hostname": "ks-1", "example.com/keep": "me"}))
	assert.NilError(t, c.RemoveLabels(ctx))
	assert.Check(t, is.Equal(counter.writes(), before+1), "a second RemoveLabels wrote: %s", counter)

	// A missing node is an error that names it.
	err = newClient(t, cfg, "no-such-node").SetKataState(ctx, nodelabel.KataInstalled)
	assert.Check(t, is.ErrorContains(err, "node no-such-node"))
}

func testDomain(t *testing.T, cp *testbed.ControlPlane, admin kubernetes.Interface) {
	createNode(t, admin, "dom-1", "cri-o://1.34.0", nil)
	setReady(t, admin, "dom-1", corev1.ConditionTrue)
	c := newClient(t, cp.AdminConfig(), "dom-1", nodelabel.WithDomain("katadeploy.example.com"))
	assert.Check(t, is.Equal(c.RuntimeLabel(), "katadeploy.example.com/container-runtime"))
	stop := run(t, c.RunRuntimeLabeler)
	waitLabels(t, admin, "dom-1", "runtime label in own domain", hasLabel("katadeploy.example.com/container-runtime", "crio"))
	assert.NilError(t, stop())
	assert.NilError(t, c.SetKataState(context.Background(), nodelabel.KataInstalled))
	l := waitLabels(t, admin, "dom-1", "kata label in own domain", hasLabel("katadeploy.example.com/kata-runtime", "true"))
	_, has := l[kataKey]
	assert.Check(t, !has)

	api, err := nodelabel.NewAPI(cp.AdminConfig())
	assert.NilError(t, err)
	_, err = nodelabel.New(api, "dom-1", nodelabel.WithDomain("not a domain"))
	assert.Check(t, is.ErrorContains(err, "label domain"))
	_, err = nodelabel.New(api, "Not_A_Node")
	assert.Check(t, is.ErrorContains(err, "node name"))
}

func testEvents(t *testing.T, cp *testbed.ControlPlane, admin kubernetes.Interface) {
	n := createNode(t, admin, "ev-1", "containerd://1.6.20", nil)
	c := newClient(t, cp.AdminConfig(), "ev-1")
	ctx := context.Background()
	assert.NilError(t, c.RecordEvent(ctx, nodelabel.ReasonInstallStarted, "installing kata-qemu, kata-clh"))
	assert.NilError(t, c.RecordEvent(ctx, nodelabel.ReasonInstallFailed, "restart containerd.service: job result \"failed\""))
	assert.NilError(t, c.RecordEvent(ctx, nodelabel.ReasonInstallFailed, "second failure"))
	assert.NilError(t, c.RecordEvent(ctx, nodelabel.ReasonInstallSucceeded, "kata-qemu, kata-clh ready"))
	assert.NilError(t, c.RecordEvent(ctx, nodelabel.ReasonWaitingRestart, "waits for containerd.service's next restart"))
	assert.NilError(t, c.RecordEvent(ctx, nodelabel.ReasonUninstallSucceeded, "uninstalled"))
	assert.NilError(t, c.RecordEvent(ctx, nodelabel.ReasonCleanupFailed, "still installed"))

	// What kubectl describe node asks for.
	sel := fields.Set{"involvedObject.kind": "Node", "involvedObject.name": "ev-1", "involvedObject.uid": string(n.UID)}.String()
	list, err := admin.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: sel})
	assert.NilError(t, err)
	got := map[string]corev1.Event{}
	for _, e := range list.Items {
		got[e.Reason] = e
	}
	assert.Check(t, is.Len(list.Items, 6), "one event per reason")
	assert.Check(t, is.Equal(got["KataWaitingForRestart"].Type, corev1.EventTypeNormal))
	assert.Check(t, is.Equal(got["KataUninstallSucceeded"].Type, corev1.EventTypeNormal))
	assert.Check(t, is.Equal(got["KataCleanupFailed"].Type, corev1.EventTypeWarning))
	assert.Check(t, is.Equal(got["KataInstallStarted"].Type, corev1.EventTypeNormal))
	assert.Check(t, is.Equal(got["KataInstallFailed"].Type, corev1.EventTypeWarning))
	assert.Check(t, is.Equal(got["KataInstallFailed"].Message, "second failure"))
	assert.Check(t, is.Equal(got["KataInstallSucceeded"].Source.Component, "kata-deploy"))
	assert.Check(t, is.Equal(got["KataInstallSucceeded"].Namespace, "default"))

	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Log("kubectl not installed: skipping the kubectl describe node check")
		return
	}
	out, err := exec.Command("kubectl", "--kubeconfig", cp.Kubeconfig(), "describe", "node", "ev-1").CombinedOutput()
	assert.NilError(t, err, string(out))
	for _, want := range []string{"KataInstallStarted", "KataInstallSucceeded", "Warning  KataInstallFailed", "second failure", "kata-deploy"} {
		assert.Check(t, strings.Contains(string(out), want), "kubectl describe node lacks %q:\n%s", want, out)
	}
}

func testWaitReady(t *testing.T, cp *testbed.ControlPlane, admin kubernetes.Interface) {
	createNode(t, admin, "wr-1", "containerd://2.2.9", nil)
	c := newClient(t, cp.AdminConfig(), "wr-1")

	// Not ready: a NotReadyError within the deadline that says why.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err := c.WaitReady(ctx, "kata-qemu")
	cancel()
	var nre *nodelabel.NotReadyError
	assert.Assert(t, errors.As(err, &nre), err)
	assert.Check(t, errors.Is(err, context.DeadlineExceeded))
	assert.Check(t, is.ErrorContains(err, "node wr-1: not ready for Kata: no Ready condition seen"))

	// Ready, but the kubelet lists handlers and ours are not among them yet.
	setReady(t, admin, "wr-1", corev1.ConditionTrue, "", "runc")
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	err = c.WaitReady(ctx, "kata-qemu", "kata-clh")
	cancel()
	assert.Check(t, is.ErrorContains(err, "runtime handlers not reported: kata-qemu, kata-clh"))

	// The handlers appear while it waits: it returns.
	done := make(chan error, 1)
	ctx, cancel = context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	go func() { done <- c.WaitReady(ctx, "kata-qemu", "kata-clh") }()
	time.Sleep(200 * time.Millisecond)
	setReady(t, admin, "wr-1", corev1.ConditionFalse, "", "runc", "kata-qemu", "kata-clh")
	time.Sleep(200 * time.Millisecond)
	setReady(t, admin, "wr-1", corev1.ConditionTrue, "", "runc", "kata-qemu", "kata-clh")
	assert.NilError(t, <-done)
	assert.Check(t, time.Since(start) < 5*time.Second)

	// A kubelet that reports no handlers (containerd 1.6): Ready is enough.
	setReady(t, admin, "wr-1", corev1.ConditionTrue)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	assert.NilError(t, c.WaitReady(ctx, "kata-qemu"))

	// Stopping its watch when done is no error: the request it cancels
	// leaves no ERROR line ("Failed to watch ...: context canceled").
	var log lockedBuffer
	api, err := nodelabel.NewAPI(cp.AdminConfig())
	assert.NilError(t, err)
	quiet, err := nodelabel.New(api, "wr-1", nodelabel.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	assert.NilError(t, err)
	for range 5 {
		assert.NilError(t, quiet.WaitReady(ctx, "kata-qemu"))
	}
	assert.Check(t, !strings.Contains(log.String(), "level=ERROR"), log.String())
}

// lockedBuffer is a bytes.Buffer that goroutines may write at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testDaemonSetTargetsNode(t *testing.T, cp *testbed.ControlPlane, admin kubernetes.Interface) {
	ctx := context.Background()
	createNode(t, admin, "ds-1", "containerd://1.6.20", map[string]string{runtimeKey: "containerd"})
	c := newClient(t, cp.AdminConfig(), "ds-1")
	ns := "kube-system"
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "kata-deploy", Namespace: ns},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "kata-deploy"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "kata-deploy"}},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{runtimeKey: "containerd"},
					Containers:   []corev1.Container{{Name: "c", Image: "example.com/kata-deploy:1"}},
				},
			},
		},
	}
	_, err := admin.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{})
	assert.NilError(t, err)

	check := func(want bool, reason string) {
		t.Helper()
		got, err := c.DaemonSetTargetsNode(ctx, ns, "kata-deploy")
		assert.NilError(t, err)
		assert.Check(t, is.Equal(got.Targets, want), got.Reason)
		assert.Check(t, is.Contains(got.Reason, reason))
		assert.Check(t, is.Equal(got.Removed, strings.Contains(reason, "deleted")), got.Reason)
	}
	// The API server's admission taints a new Node not-ready:NoSchedule
	// until the node lifecycle controller (absent here) sees it Ready;
	// daemon pods do not tolerate that taint by default.
	check(false, "does not tolerate taint node.kubernetes.io/not-ready:NoSchedule")
	setTaints(t, admin, "ds-1")
	check(true, "targets node ds-1")

	// The DaemonSet controller's own tolerations cover condition taints.
	setTaints(t, admin, "ds-1", corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule})
	check(true, "targets")
	setTaints(t, admin, "ds-1", corev1.Taint{Key: "example.com/dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule})
	check(false, "does not tolerate taint example.com/dedicated=gpu:NoSchedule")
	setTaints(t, admin, "ds-1", corev1.Taint{Key: "example.com/note", Effect: corev1.TaintEffectPreferNoSchedule})
	check(true, "targets")
	setTaints(t, admin, "ds-1")

	// The runtime label goes: the node is no longer selected.
	patchLabels(t, admin, "ds-1", `{"metadata":{"labels":{"`+runtimeKey+`":"crio"}}}`)
	check(false, "node selector or affinity does not match")
	patchLabels(t, admin, "ds-1", `{"metadata":{"labels":{"`+runtimeKey+`":"containerd"}}}`)

	// Node affinity in the template.
	patchDS(t, admin, ns, `{"spec":{"template":{"spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"kubernetes.io/hostname","operator":"NotIn","values":["ds-1"]}]}]}}}}}}}`)
	check(false, "does not match")
	patchDS(t, admin, ns, `{"spec":{"template":{"spec":{"affinity":null}}}}`)
	check(true, "targets")

	// Being deleted (held by a finalizer), then gone.
	patchDS(t, admin, ns, `{"metadata":{"finalizers":["example.com/hold"]}}`)
	assert.NilError(t, admin.AppsV1().DaemonSets(ns).Delete(ctx, "kata-deploy", metav1.DeleteOptions{}))
	check(false, "is being deleted")
	patchDS(t, admin, ns, `{"metadata":{"finalizers":null}}`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := c.DaemonSetTargetsNode(ctx, ns, "kata-deploy")
		assert.NilError(t, err)
		if strings.Contains(got.Reason, "does not exist") {
			assert.Check(t, !got.Targets)
			assert.Check(t, got.Removed)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("DaemonSet not gone: %s", got.Reason)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func patchLabels(t testing.TB, cs kubernetes.Interface, node, patch string) {
	t.Helper()
	_, err := cs.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	assert.NilError(t, err)
}

func patchDS(t *testing.T, cs kubernetes.Interface, ns, patch string) {
	t.Helper()
	_, err := cs.AppsV1().DaemonSets(ns).Patch(context.Background(), "kata-deploy", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	assert.NilError(t, err)
}

func setTaints(t *testing.T, cs kubernetes.Interface, node string, taints ...corev1.Taint) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Spec.Taints = taints
		_, err = cs.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
		return err
	})
	assert.NilError(t, err)
}

func deleteNode(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	assert.NilError(t, cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}))
}
