package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestMain(m *testing.M) {
	code := m.Run()
	// Every node must be gone once the tests are: no overlay, no directory, no nspawn.
	// Other test binaries may run nodes at the same time: count only ours.
	entries, _ := os.ReadDir(nodesDir())
	for _, e := range entries {
		owner, _ := os.ReadFile(filepath.Join(nodesDir(), e.Name(), "owner"))
		if strings.TrimSpace(string(owner)) == fmt.Sprint(os.Getpid()) {
			fmt.Fprintf(os.Stderr, "testbed: leftover node directory %s\n", e.Name())
			code = 1
		}
	}
	if pids := nspawnChildren(); len(pids) > 0 {
		fmt.Fprintf(os.Stderr, "testbed: leftover systemd-nspawn processes: %v\n", pids)
		code = 1
	}
	os.Exit(code)
}

// nspawnChildren lists systemd-nspawn processes started by this test binary.
func nspawnChildren() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "systemd-nspawn" && ppid(pid) == os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestControlPlane(t *testing.T) {
	cp := StartControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	kc, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig())
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	admin := kubernetes.NewForConfigOrDie(kc)
	v, err := admin.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != "v1.37.2" {
		t.Errorf("server version %q, want v1.37.2", v.GitVersion)
	}

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "plain-node"}}
	if _, err := admin.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin creates a Node: %v", err)
	}

	sa := kubernetes.NewForConfigOrDie(cp.ServiceAccountConfig(t, "kube-system", "kata-deploy"))
	_, err = sa.CoreV1().Nodes().Get(ctx, "plain-node", metav1.GetOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("ServiceAccount without RBAC gets a Node: err = %v, want Forbidden", err)
	}
	_, err = sa.CoreV1().Nodes().Patch(ctx, "plain-node", "application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("ServiceAccount without RBAC patches a Node: err = %v, want Forbidden", err)
	}
	// The same identity is allowed once RBAC grants it: the token really is that SA's.
	grant(ctx, t, admin, "system:serviceaccount:kube-system:kata-deploy")
	// The authorizer's informers see the binding shortly after it is created.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := sa.CoreV1().Nodes().Get(ctx, "plain-node", metav1.GetOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ServiceAccount with RBAC gets a Node: %v", err)
		}
	}
}

// grant lets user get and list nodes.
func grant(ctx context.Context, t *testing.T, cs kubernetes.Interface, user string) {
	t.Helper()
	cr := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "testbed-node-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list"}}},
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ClusterRole: %v", err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "testbed-node-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: cr.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ClusterRoleBinding: %v", err)
	}
}

func TestNodes(t *testing.T) {
	Require(t)
	cp := StartControlPlane(t)
	restarter := buildHelper(t, "./internal/sdrestart")
	for _, f := range Flavours() {
		t.Run(string(f), func(t *testing.T) {
			t.Parallel()
			testNode(t, cp, f, restarter)
		})
	}
}

func testNode(t *testing.T, cp *ControlPlane, f Flavour, restarter string) {
	n := StartNode(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	state, err := n.UnitActiveState(ctx, n.RuntimeUnit())
	if err != nil || state != "active" {
		t.Fatalf("%s: state %q, err %v", n.RuntimeUnit(), state, err)
	}
	wantPrefix := map[Flavour]string{Containerd16: "containerd://1.6.", Containerd2: "containerd://v2.2.9", CRIO: "cri-o://1.34.0"}[f]
	if !strings.HasPrefix(n.RuntimeVersion(), wantPrefix) {
		t.Errorf("RuntimeVersion %q, want prefix %q", n.RuntimeVersion(), wantPrefix)
	}
	info, err := n.CRIStatus(ctx)
	if err != nil {
		t.Fatalf("CRI status: %v", err)
	}
	if info["config"] == "" {
		t.Errorf("CRI status info has no config: keys %v", keys(info))
	}
	handlers, err := n.RuntimeHandlers(ctx)
	if err != nil {
		t.Fatalf("runtime handlers: %v", err)
	}
	wantHandler := map[Flavour]string{Containerd16: "runc", Containerd2: "runc", CRIO: "crun"}[f]
	if !contains(handlers, wantHandler) {
		t.Errorf("runtime handlers %v, want %q among them", handlers, wantHandler)
	}
	// crictl in the node is configured for the node's runtime (a debugging aid).
	if out, err := n.Exec(ctx, "crictl", "version"); err != nil || !strings.Contains(string(out), "RuntimeName:") {
		t.Errorf("crictl version in node: %s, %v", out, err)
	}
	if out, err := n.Exec(ctx, "hostname"); err != nil || strings.TrimSpace(string(out)) != n.Name() {
		t.Errorf("hostname inside node = %q, %v; want %q", out, err, n.Name())
	}

	// Restart over D-Bus from the host (through the node's bus daemon).
	before, err := n.ActiveEnterTimestamp(ctx, n.RuntimeUnit())
	if err != nil || before.IsZero() {
		t.Fatalf("ActiveEnterTimestamp: %v, %v", before, err)
	}
	if err := n.RestartUnit(ctx, n.RuntimeUnit()); err != nil {
		t.Fatalf("restart from host: %v", err)
	}
	after, err := n.ActiveEnterTimestamp(ctx, n.RuntimeUnit())
	if err != nil || !after.After(before) {
		t.Fatalf("ActiveEnterTimestamp after host restart: %v (before %v), %v", after, before, err)
	}
	// Restart from a pod-like process over /run/systemd/private, as the installer does.
	out, err := n.RunAsPod(ctx, restarter, n.RuntimeUnit())
	if err != nil {
		t.Fatalf("restart from pod: %v (%s)", err, out)
	}
	third, err := n.ActiveEnterTimestamp(ctx, n.RuntimeUnit())
	if err != nil || !third.After(after) {
		t.Fatalf("ActiveEnterTimestamp after pod restart: %v (before %v), %v", third, after, err)
	}
	if restarts, err := n.NRestarts(ctx, n.RuntimeUnit()); err != nil || restarts != 0 {
		t.Errorf("NRestarts = %d, %v; want 0 (restarts asked for are not counted)", restarts, err)
	}

	n.Register(t, cp)
	cs := kubernetes.NewForConfigOrDie(cp.AdminConfig())
	var node *corev1.Node
	// The runtime was just restarted: wait for the stand-in kubelet to report Ready.
	for deadline := time.Now().Add(20 * time.Second); ; {
		node, err = cs.CoreV1().Nodes().Get(ctx, n.Name(), metav1.GetOptions{})
		if err == nil && isReady(node) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Node %s not Ready: %v %+v", n.Name(), err, node.Status.Conditions)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := node.Status.NodeInfo.ContainerRuntimeVersion; got != n.RuntimeVersion() {
		t.Errorf("containerRuntimeVersion %q, want %q", got, n.RuntimeVersion())
	}
}

func isReady(n *corev1.Node) bool {
	c := findCondition(n.Status.Conditions, corev1.NodeReady)
	return c != nil && c.Status == corev1.ConditionTrue
}

func keys(m map[string]string) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return k
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// buildHelper compiles a helper command of this package for running inside nodes.
func buildHelper(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}
