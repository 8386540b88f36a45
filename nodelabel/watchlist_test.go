package nodelabel_test

import (
	"context"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/nodelabel/clientset"
)

// readyNode is a Ready Node that reports kata-qemu.
func readyNode(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			RuntimeHandlers: []corev1.NodeRuntimeHandler{{Name: "kata-qemu"}},
		},
	}
}

// requireWatchListGate skips when the environment turned client-go's
// WatchListClient gate off: the tests below are about the gate's default.
func requireWatchListGate(t *testing.T) {
	t.Helper()
	if !clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient) {
		t.Skip("KUBE_FEATURE_WatchListClient is off in the environment; these tests need client-go's default")
	}
}

// noMarker hides the adapter's IsWatchListSemanticsUnSupported, as an
// importer's own API that wraps another one does unless it forwards it.
type noMarker struct{ nodelabel.API }

// declaresNoWatchList is an importer's API that says it cannot stream a
// watch-list, the way client-go's fake clientset does.
type declaresNoWatchList struct{ nodelabel.API }

func (declaresNoWatchList) IsWatchListSemanticsUnSupported() bool { return true }

// The watches must not wait for a watch-list stream that an API which
// declares it cannot serve one (client-go's fake clientset, through the
// clientset adapter or an importer's own API) will never send. The
// deadline only bounds a failure: a passing run takes milliseconds.
func TestWatchWithoutWatchListSupport(t *testing.T) {
	requireWatchListGate(t)
	for _, tc := range []struct {
		name string
		api  func(*fake.Clientset) nodelabel.API
	}{
		{"fake clientset", func(cs *fake.Clientset) nodelabel.API { return clientset.API(cs) }},
		{"own API with the marker", func(cs *fake.Clientset) nodelabel.API { return declaresNoWatchList{noMarker{clientset.API(cs)}} }},
	} {
		t.Run(tc.name+"/WaitReady", func(t *testing.T) {
			cs := fake.NewClientset(readyNode("n1"))
			c, err := nodelabel.New(tc.api(cs), "n1")
			assert.NilError(t, err)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			assert.NilError(t, c.WaitReady(ctx, "kata-qemu"))
		})
		t.Run(tc.name+"/KeepKataState", func(t *testing.T) {
			cs := fake.NewClientset(readyNode("n1"))
			c, err := nodelabel.New(tc.api(cs), "n1")
			assert.NilError(t, err)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- c.KeepKataState(ctx, nodelabel.KataInstalled) }()
			defer func() {
				cancel()
				assert.Check(t, <-done)
			}()
			poll.WaitOn(t, func(poll.LogT) poll.Result {
				n, err := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
				if err != nil {
					return poll.Error(err)
				}
				if v := n.Labels[c.KataLabel()]; v != string(nodelabel.KataInstalled) {
					return poll.Continue("label %q is %q", c.KataLabel(), v)
				}
				return poll.Success()
			}, poll.WithTimeout(10*time.Second), poll.WithDelay(5*time.Millisecond))
		})
	}
}

// The clientset adapter says what its clientset says: the fake cannot serve
// a watch-list, a real clientset (which talks to an API server) can.
func TestAdapterForwardsWatchListSupport(t *testing.T) {
	type marker interface{ IsWatchListSemanticsUnSupported() bool }
	m, ok := clientset.API(fake.NewClientset()).(marker)
	assert.Assert(t, ok, "the adapter must declare what its clientset declares")
	assert.Check(t, m.IsWatchListSemanticsUnSupported())

	real, err := kubernetes.NewForConfig(&rest.Config{Host: "https://127.0.0.1:6443"})
	assert.NilError(t, err)
	m, ok = clientset.API(real).(marker)
	assert.Assert(t, ok)
	assert.Check(t, !m.IsWatchListSemanticsUnSupported())
}
