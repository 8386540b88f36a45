package installer

import (
	"context"
	"errors"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kata-deploy/kata-deploy/internal/noderecord"
)

// installerDS is an installer DaemonSet that selects nodes by their
// runtime label, as the manifests' do.
func installerDS() *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "kata-deploy-containerd", Namespace: "kube-system"},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			NodeSelector: map[string]string{runtimeLabel: "containerd"},
		}}},
	}
}

// setRuntimeLabel sets (or, with "", removes) the fake Node's runtime
// label. It only marks t failed, never stops it: it also runs on a
// goroutine of its own while a decision is being made.
func setRuntimeLabel(t *testing.T, cs *fake.Clientset, value string) {
	t.Helper()
	ctx := context.Background()
	n, err := cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if !assert.Check(t, err) {
		return
	}
	if value == "" {
		delete(n.Labels, runtimeLabel)
	} else {
		n.Labels[runtimeLabel] = value
	}
	_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	assert.Check(t, err)
}

// TestRemovalDecision is what a stopped installer makes of its DaemonSet:
// only a removal that is real uninstalls (issue 18).
func TestRemovalDecision(t *testing.T) {
	for _, tc := range []struct {
		name   string
		grace  time.Duration
		change func(t *testing.T, cs *fake.Clientset) // before the decision
		during func(t *testing.T, cs *fake.Clientset) // while it is being made
		remove bool
		why    string
		err    string
	}{
		{
			name:  "targets the node (rolling update, pod deleted or evicted): kept",
			grace: time.Minute,
			why:   "targets node node-1",
		},
		{
			name:   "DaemonSet deleted: removed at once",
			grace:  time.Hour,
			change: func(t *testing.T, cs *fake.Clientset) { deleteDS(t, cs) },
			remove: true,
			why:    "does not exist",
		},
		{
			name:  "DaemonSet being deleted: removed at once",
			grace: time.Hour,
			change: func(t *testing.T, cs *fake.Clientset) {
				ds := installerDS()
				now := metav1.Now()
				ds.DeletionTimestamp = &now
				_, err := cs.AppsV1().DaemonSets("kube-system").Update(context.Background(), ds, metav1.UpdateOptions{})
				assert.NilError(t, err)
			},
			remove: true,
			why:    "is being deleted",
		},
		{
			name:   "the runtime label gone for a moment: kept",
			grace:  time.Minute,
			change: func(t *testing.T, cs *fake.Clientset) { setRuntimeLabel(t, cs, "") },
			during: func(t *testing.T, cs *fake.Clientset) {
				time.Sleep(3 * time.Second)
				setRuntimeLabel(t, cs, "containerd")
			},
			why: "targets node node-1 again",
		},
		{
			name:   "the runtime label gone for good: removed after the grace",
			grace:  3 * time.Second,
			change: func(t *testing.T, cs *fake.Clientset) { setRuntimeLabel(t, cs, "crio") },
			remove: true,
			why:    "node selector or affinity does not match node node-1, still after 3s",
		},
		{
			name:  "the API server does not answer: kept",
			grace: 3 * time.Second,
			change: func(t *testing.T, cs *fake.Clientset) {
				cs.PrependReactor("get", "daemonsets", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
					return true, nil, errors.New("connection refused")
				})
			},
			err: "connection refused",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, node := fakeNode(t, &callLog{}, map[string]string{runtimeLabel: "containerd"})
			_, err := cs.AppsV1().DaemonSets("kube-system").Create(context.Background(), installerDS(), metav1.CreateOptions{})
			assert.NilError(t, err)
			if tc.change != nil {
				tc.change(t, cs)
			}
			if tc.during != nil {
				done := make(chan struct{})
				go func() { defer close(done); tc.during(t, cs) }()
				defer func() { <-done }()
			}
			c := &Config{Node: node}
			start := time.Now()
			remove, why, err := c.removal(context.Background(), "kube-system", "kata-deploy-containerd", tc.grace)
			if tc.err != "" {
				assert.Check(t, is.ErrorContains(err, tc.err))
				assert.Check(t, time.Since(start) >= tc.grace, "gave up before the grace")
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(remove, tc.remove))
			assert.Check(t, is.Contains(why, tc.why))
			if tc.remove && tc.change != nil && tc.grace < time.Minute {
				assert.Check(t, time.Since(start) >= tc.grace, "a mismatch counted as a removal before the grace")
			}
		})
	}
}

func deleteDS(t *testing.T, cs *fake.Clientset) {
	t.Helper()
	assert.NilError(t, cs.AppsV1().DaemonSets("kube-system").Delete(context.Background(), "kata-deploy-containerd", metav1.DeleteOptions{}))
}

// TestStopRecordsWhy: the decision is logged and recorded on the Node,
// kept or removed.
func TestStopRecordsWhy(t *testing.T) {
	t.Run("kept", func(t *testing.T) {
		cs, node := fakeNode(t, &callLog{}, map[string]string{runtimeLabel: "containerd"})
		_, err := cs.AppsV1().DaemonSets("kube-system").Create(context.Background(), installerDS(), metav1.CreateOptions{})
		assert.NilError(t, err)
		c := &Config{Node: node}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assert.NilError(t, c.stop(ctx, RunOptions{DaemonSet: "kube-system/kata-deploy-containerd"}))
		assert.Check(t, is.Contains(eventMessage(t, cs, "KataKeptInstalled"), "Kata stays installed: DaemonSet kube-system/kata-deploy-containerd targets node node-1"))
	})
	t.Run("removed", func(t *testing.T) {
		in := installNode(t, true, map[string]string{runtimeLabel: "containerd"})
		c := in.config(&fakeSystemd{}, &fakeCRI{handlers: serving("runc", "kata", "kata-qemu")})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assert.NilError(t, c.stop(ctx, RunOptions{DaemonSet: "kube-system/kata-deploy-containerd"}))
		assert.Check(t, is.Contains(eventMessage(t, in.cs, "KataRemovalConfirmed"), "uninstalling Kata: DaemonSet kube-system/kata-deploy-containerd does not exist"))
		assert.Check(t, is.Equal(nodeLabels(t, in.cs)[kataLabel], "cleanup"))
		assert.Check(t, is.Equal(recordState(t, in.host), noderecord.Uninstalled))
	})
}
