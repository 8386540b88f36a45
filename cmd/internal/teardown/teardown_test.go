package teardown_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kata-deploy/kata-deploy/cmd/internal/teardown"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// The fake clientset deletes at once; what is checked here is the request
// (foreground propagation) and that a DaemonSet already gone is fine.
func TestRemoveDaemonSets(t *testing.T) {
	cs := fake.NewClientset(&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kata-deploy-containerd", Namespace: "kube-system"}})
	var propagation []metav1.DeletionPropagation
	cs.PrependReactor("delete", "daemonsets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		propagation = append(propagation, *a.(k8stesting.DeleteAction).GetDeleteOptions().PropagationPolicy)
		return false, nil, nil
	})
	err := teardown.RemoveDaemonSets(context.Background(), cs, "kube-system", []string{"kata-deploy-containerd", "kata-deploy-crio"}, discard)
	assert.NilError(t, err)
	assert.DeepEqual(t, propagation, []metav1.DeletionPropagation{metav1.DeletePropagationForeground, metav1.DeletePropagationForeground})
}

// A DaemonSet whose pods never go: the error names it when time runs out.
func TestRemoveDaemonSetsTimeout(t *testing.T) {
	cs := fake.NewClientset(&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kata-deploy-crio", Namespace: "kube-system"}})
	cs.PrependReactor("delete", "daemonsets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, nil // accepted, but the object stays (pods still terminating)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := teardown.RemoveDaemonSets(ctx, cs, "kube-system", []string{"kata-deploy-crio"}, discard)
	assert.ErrorContains(t, err, "DaemonSets still terminating: kube-system/kata-deploy-crio")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestAwaitNodesClean(t *testing.T) {
	const sel = "kata-containers.io/kata-runtime=cleanup"
	node := func(name, value string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kata-containers.io/kata-runtime": value}}}
	}
	t.Run("done", func(t *testing.T) {
		cs := fake.NewClientset(node("a", "true"))
		assert.NilError(t, teardown.AwaitNodesClean(context.Background(), cs, sel, discard))
	})
	t.Run("cleaned while waiting", func(t *testing.T) {
		cs := fake.NewClientset(node("a", "cleanup"))
		go func() {
			time.Sleep(50 * time.Millisecond)
			_ = cs.CoreV1().Nodes().Delete(context.Background(), "a", metav1.DeleteOptions{})
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NilError(t, teardown.AwaitNodesClean(ctx, cs, sel, discard))
	})
	t.Run("stuck", func(t *testing.T) {
		cs := fake.NewClientset(node("b", "cleanup"), node("a", "cleanup"))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := teardown.AwaitNodesClean(ctx, cs, sel, discard)
		assert.ErrorContains(t, err, "nodes still labelled "+sel+": a, b")
	})
}
