package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// statusSyncInterval is how often Register's stand-in kubelet refreshes the Node status.
const statusSyncInterval = time.Second

// Register creates the node's Node object on c, with the labels a kubelet sets, and
// keeps its status true to the node for the rest of the test, the way a kubelet would
// (there is no kubelet: pods cannot run inside nspawn, whose cgroups are read-only):
//   - status.nodeInfo.containerRuntimeVersion from CRI Version ("containerd://1.6.20~ds1");
//   - the Ready condition True while the CRI runtime reports RuntimeReady (the network
//     condition is ignored: the testbed has no CNI), False while the runtime is down;
//   - status.runtimeHandlers from CRI Status runtime_handlers, as the kubelet does, so it
//     stays empty on containerd 1.6, which does not report them.
//
// t.Cleanup stops the updates and deletes the Node.
func (n *Node) Register(t testing.TB, c *ControlPlane) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatalf("testbed: register %s: %v", n.name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{
		"kubernetes.io/hostname": n.name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     goruntime.GOARCH,
	}}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("testbed: register %s: %v", n.name, err)
	}
	if err := n.syncStatus(ctx, cs); err != nil {
		t.Fatalf("testbed: register %s: %v", n.name, err)
	}
	syncCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(statusSyncInterval)
		defer tick.Stop()
		for {
			select {
			case <-syncCtx.Done():
				return
			case <-tick.C:
				sctx, cancel := context.WithTimeout(syncCtx, 10*time.Second)
				// Errors are transient here (runtime restarting, API busy); the next
				// tick retries, as a kubelet would.
				_ = n.syncStatus(sctx, cs)
				cancel()
			}
		}
	}()
	t.Cleanup(func() {
		stop()
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := cs.CoreV1().Nodes().Delete(ctx, n.name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) && !isConnRefused(err) {
			t.Logf("testbed: delete Node %s: %v", n.name, err)
		}
	})
}

// isConnRefused tells a control plane that is already gone (torn down first).
func isConnRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// syncStatus writes the node's current runtime state into its Node status when it
// differs from what is there.
func (n *Node) syncStatus(ctx context.Context, cs kubernetes.Interface) error {
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse,
		Reason: "KubeletNotReady", Message: "container runtime is down"}
	version := n.runtimeVersion
	var handlers []corev1.NodeRuntimeHandler
	if resp, err := n.CRIStatusResponse(ctx); err == nil {
		for _, c := range resp.GetStatus().GetConditions() {
			if c.GetType() == "RuntimeReady" && c.GetStatus() {
				ready.Status, ready.Reason, ready.Message = corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"
			}
		}
		for _, h := range resp.GetRuntimeHandlers() {
			handlers = append(handlers, corev1.NodeRuntimeHandler{Name: h.GetName(), Features: &corev1.NodeRuntimeHandlerFeatures{
				RecursiveReadOnlyMounts: ptr(h.GetFeatures().GetRecursiveReadOnlyMounts()),
				UserNamespaces:          ptr(h.GetFeatures().GetUserNamespaces()),
			}})
		}
		if v, err := n.criVersion(ctx); err == nil {
			version = v
		}
	}
	node, err := cs.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get Node: %w", err)
	}
	old := findCondition(node.Status.Conditions, corev1.NodeReady)
	same := old != nil && old.Status == ready.Status &&
		node.Status.NodeInfo.ContainerRuntimeVersion == version &&
		slices.EqualFunc(node.Status.RuntimeHandlers, handlers, func(a, b corev1.NodeRuntimeHandler) bool { return a.Name == b.Name })
	if same {
		return nil
	}
	now := metav1.Now()
	ready.LastHeartbeatTime, ready.LastTransitionTime = now, now
	if old != nil && old.Status == ready.Status {
		ready.LastTransitionTime = old.LastTransitionTime
	}
	kernel := ""
	var uts syscall.Utsname
	if syscall.Uname(&uts) == nil {
		kernel = utsString(uts.Release[:])
	}
	node.Status.Conditions = []corev1.NodeCondition{ready}
	node.Status.RuntimeHandlers = handlers
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
		{Type: corev1.NodeHostName, Address: n.name},
	}
	node.Status.NodeInfo = corev1.NodeSystemInfo{
		ContainerRuntimeVersion: version,
		KubeletVersion:          n.env.k8sVersion,
		OperatingSystem:         "linux",
		Architecture:            goruntime.GOARCH,
		OSImage:                 "Debian GNU/Linux 12 (bookworm)",
		KernelVersion:           kernel,
		MachineID:               readTrim(n.HostPath("/etc/machine-id")),
	}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update Node status: %w", err)
	}
	return nil
}

func findCondition(cs []corev1.NodeCondition, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

func utsString(b []int8) string {
	s := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
