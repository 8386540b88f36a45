package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
	"github.com/kata-deploy/kata-deploy/nodelabel"
)

// binDir holds the commands, built once for the whole run by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kata-deploy-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "../cmd/...")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build commands: %v\n%s", err, out)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is one control plane with its kata-deploy identities.
type cluster struct {
	cp    *testbed.ControlPlane
	admin kubernetes.Interface
	// kubeconfigs per ServiceAccount, bound to exactly nodelabel's rules.
	kubeconfigs map[string][]byte
}

const namespace = "kube-system"

func newCluster(t *testing.T) *cluster {
	t.Helper()
	cp := testbed.StartControlPlane(t)
	c := &cluster{cp: cp, admin: cp.AdminClient(t), kubeconfigs: map[string][]byte{}}
	ctx := context.Background()
	for name, rules := range map[string][]rbacv1.PolicyRule{
		"kata-labeler":   nodelabel.LabelerRules(),
		"kata-installer": nodelabel.InstallerRules(),
		"kata-cleanup":   nodelabel.CleanupRules(),
	} {
		_, err := c.admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
		must(t, err)
		_, err = c.admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: namespace, Name: name}},
		}, metav1.CreateOptions{})
		must(t, err)
		kc, err := cp.KubeconfigFor(name, cp.ServiceAccountConfig(t, namespace, name).BearerToken)
		must(t, err)
		c.kubeconfigs[name] = kc
	}
	return c
}

// node is a testbed node registered with the cluster, with kata-deploy's
// files in place as its DaemonSet pods would have them.
type node struct {
	*testbed.Node
	c *cluster
}

func (c *cluster) startNode(t *testing.T, f testbed.Flavour, opts ...testbed.NodeOption) *node {
	t.Helper()
	n := testbed.StartNode(t, f, opts...)
	n.Register(t, c.cp)
	for name, kc := range c.kubeconfigs {
		p := n.HostPath("/var/lib/kata-e2e/" + name + ".kubeconfig")
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, kc, 0o600))
	}
	for _, b := range []string{"kata-labeler", "kata-installer", "kata-cleanup"} {
		data, err := os.ReadFile(filepath.Join(binDir, b))
		must(t, err)
		must(t, os.WriteFile(n.HostPath("/var/lib/kata-e2e/"+b), data, 0o755))
	}
	writePayload(t, n.HostPath(payloadDir), "v1")
	return &node{Node: n, c: c}
}

const payloadDir = "/var/lib/kata-e2e/payload"

// e2eShims are the shims the installs register: one Go-runtime shim and
// one runtime-rs shim, so both binaries must be right.
var e2eShims = []string{"qemu", "dragonball"}

// writePayload writes a Kata payload in the kata-static layout: stand-in
// shims (no VM runs inside nspawn) and configuration files.
func writePayload(t *testing.T, dir, version string) {
	t.Helper()
	files := map[string]string{
		"opt/kata/bin/containerd-shim-kata-v2":                                             "#!/bin/sh\necho kata shim " + version + "\n",
		"opt/kata/runtime-rs/bin/containerd-shim-kata-v2":                                  "#!/bin/sh\necho kata runtime-rs shim " + version + "\n",
		"opt/kata/share/defaults/kata-containers/configuration-qemu.toml":                  "[hypervisor.qemu]\npath = \"/opt/kata/bin/qemu-system-x86_64\"\n# " + version + "\n",
		"opt/kata/share/defaults/kata-containers/runtime-rs/configuration-dragonball.toml": "[hypervisor.dragonball]\n# " + version + "\n",
		"opt/kata/share/kata-containers/vmlinux.container":                                 strings.Repeat("kernel "+version+"\n", 1024),
		"opt/kata/share/kata-containers/kata-containers.img":                               strings.Repeat("image "+version+"\n", 4096),
	}
	for p, content := range files {
		full := filepath.Join(dir, p)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.WriteFile(full, []byte(content), 0o755))
	}
}

// pod is one of kata-deploy's binaries running in a node's namespaces with a
// child PID namespace of its own, as a pod's process is, but with the whole
// node root as its host root (the cluster tests run real pods).
type pod struct {
	name string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
	err  error
}

// env returns the DaemonSet-style environment for a binary on n.
func (n *node) env(binary string, extra ...string) []string {
	return append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"KATA_NODE_NAME=" + n.Name(),
		"KATA_KUBECONFIG=/var/lib/kata-e2e/" + binary + ".kubeconfig",
		// Nodes share the host's network: a fixed health port would clash
		// between nodes; a random one still serves the endpoints.
		"KATA_HEALTH_ADDR=127.0.0.1:0",
		"KATA_HOST_ROOT=/",
		"KATA_PAYLOAD=" + payloadDir,
		"KATA_SHIMS=" + strings.Join(e2eShims, ","),
		"KATA_VERIFY_TIMEOUT=60s",
	}, extra...)
}

// start runs binary with args in the node until it exits or is signalled.
func (n *node) start(t *testing.T, binary string, env []string, args ...string) *pod {
	t.Helper()
	argv := append([]string{"-t", strconv.Itoa(n.PID()), "-a", "--", "unshare", "-p", "-f", "--mount-proc", "/var/lib/kata-e2e/" + binary}, args...)
	p := &pod{name: binary, cmd: exec.Command("nsenter", argv...), out: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	must(t, p.cmd.Start())
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", binary, p.out.String())
		}
	})
	return p
}

// run runs binary to completion and returns its output.
func (n *node) run(t *testing.T, binary string, env []string, args ...string) (string, error) {
	t.Helper()
	p := n.start(t, binary, env, args...)
	select {
	case <-p.done:
	case <-time.After(5 * time.Minute):
		p.signal(syscall.SIGKILL)
		<-p.done
	}
	return p.out.String(), p.err
}

// signal sends sig to the binary itself, PID 1 of the pod's PID namespace:
// nsenter forks unshare, which forks the binary.
func (p *pod) signal(sig syscall.Signal) {
	if p.cmd.Process == nil {
		return
	}
	for i := 0; i < 100; i++ {
		select {
		case <-p.done:
			return
		default:
		}
		if pid := findDescendant(p.cmd.Process.Pid, p.name); pid > 0 {
			syscall.Kill(pid, sig)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.cmd.Process.Signal(sig)
}

// findDescendant returns the first process below pid whose command name is
// name, or 0.
func findDescendant(pid int, name string) int {
	children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, f := range strings.Fields(string(children)) {
		child, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", child))
		if strings.TrimSpace(string(comm)) == name {
			return child
		}
		if found := findDescendant(child, name); found > 0 {
			return found
		}
	}
	return 0
}

// wait waits for the pod to exit and returns its error.
func (p *pod) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("%s did not exit within %s:\n%s", p.name, d, p.out.String())
		return nil
	}
}

// waitLabel waits until the node's label key has value want ("" = absent).
func (c *cluster) waitLabel(t *testing.T, nodeName, key, want string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(d)
	for {
		n, err := c.admin.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
		must(t, err)
		got, ok := n.Labels[key]
		if (want == "" && !ok) || (want != "" && got == want) {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: label %s is %q, want %q after %s", nodeName, key, got, want, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// events returns the events recorded on a node.
func (c *cluster) events(t *testing.T, nodeName string) []corev1.Event {
	t.Helper()
	return nodeEvents(t, c.admin, nodeName)
}

func nodeEvents(t *testing.T, cs kubernetes.Interface, nodeName string) []corev1.Event {
	t.Helper()
	list, err := cs.CoreV1().Events(nodelabel.EventNamespace).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + nodeName,
	})
	must(t, err)
	return list.Items
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
