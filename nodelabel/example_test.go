package nodelabel_test

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/nodelabel/clientset"
)

// An installer's use of the package, on one node: record that it starts,
// wait for the node to report Kata's handlers after the runtime restart,
// mark the node, and keep the mark until it is stopped.
func Example() {
	// In a pod: nodelabel.NewAPI(rest.InClusterConfig()), and the node
	// name from the downward API. A fake clientset keeps the example
	// runnable.
	cs := fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "worker-1"},
		Status: corev1.NodeStatus{
			Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			RuntimeHandlers: []corev1.NodeRuntimeHandler{{Name: "runc"}, {Name: "kata-qemu"}},
		},
	})
	c, err := nodelabel.New(clientset.API(cs), "worker-1")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	_ = c.RecordEvent(ctx, nodelabel.ReasonInstallStarted, "installing kata-qemu")
	// ... install, restart the runtime ...
	if err := c.WaitReady(ctx, "kata-qemu"); err != nil {
		_ = c.RecordEvent(ctx, nodelabel.ReasonInstallFailed, err.Error())
		panic(err)
	}
	if err := c.SetKataState(ctx, nodelabel.KataInstalled); err != nil {
		panic(err)
	}
	_ = c.RecordEvent(ctx, nodelabel.ReasonInstallSucceeded, "kata-qemu ready")

	n, _ := cs.CoreV1().Nodes().Get(ctx, "worker-1", metav1.GetOptions{})
	fmt.Println(c.KataLabel(), "=", n.Labels[c.KataLabel()])

	// Keep the mark, which a kubelet re-registration (k3s, rke2) wipes,
	// until SIGTERM. A real main passes signal.NotifyContext's context;
	// here a short timeout stands in for the signal.
	term, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if err := c.KeepKataState(term, nodelabel.KataInstalled); err != nil {
		panic(err)
	}

	// Output: kata-containers.io/kata-runtime = true
}

// The rules a ClusterRole for the installer needs.
func ExampleInstallerRules() {
	for _, r := range nodelabel.InstallerRules() {
		fmt.Printf("%q %q %q\n", r.APIGroups, r.Resources, r.Verbs)
	}
	// Output:
	// [""] ["nodes"] ["get" "list" "watch" "patch"]
	// [""] ["events"] ["create" "patch"]
	// ["apps"] ["daemonsets"] ["get"]
}
