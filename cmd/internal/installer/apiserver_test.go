package installer

import (
	"context"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
	"github.com/kata-deploy/kata-deploy/nodelabel"
)

// TestRestartDisabledOnAPIServer: with --restart=false nothing verifies the
// handlers, so a real API server must see the node labelled
// waiting-restart, never true, with an event that says why (issue 14,
// item 3).
func TestRestartDisabledOnAPIServer(t *testing.T) {
	cp := testbed.StartControlPlane(t)
	admin := cp.AdminClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "wait-1"}}, metav1.CreateOptions{})
	assert.NilError(t, err)
	n.Status.NodeInfo.ContainerRuntimeVersion = "containerd://1.7.22"
	n, err = admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	assert.NilError(t, err)

	api, err := nodelabel.NewAPI(cp.AdminConfig())
	assert.NilError(t, err)
	node, err := nodelabel.New(api, "wait-1")
	assert.NilError(t, err)
	c := filesOnly(host(t), payload(t, "qemu"), "qemu")
	c.RuntimeVersion = ""
	c.Node = node
	state, err := c.Install(ctx)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(state, nodelabel.KataWaitingRestart))

	got, err := admin.CoreV1().Nodes().Get(ctx, "wait-1", metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got.Labels[node.KataLabel()], "waiting-restart"))
	sel := fields.Set{"involvedObject.kind": "Node", "involvedObject.name": "wait-1", "involvedObject.uid": string(n.UID)}.String()
	evs, err := admin.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: sel})
	assert.NilError(t, err)
	reasons := map[string]string{}
	for _, e := range evs.Items {
		reasons[e.Reason] = e.Message
	}
	assert.Check(t, is.Contains(reasons, "KataWaitingForRestart"))
	assert.Check(t, is.Contains(reasons[string(nodelabel.ReasonWaitingRestart)], "containerd.service was not restarted"))
	_, succeeded := reasons[string(nodelabel.ReasonInstallSucceeded)]
	assert.Check(t, !succeeded, "an unverified install recorded success")
}
