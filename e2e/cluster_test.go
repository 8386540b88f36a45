package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

// The image references the manifests and examples name; the cluster's registry
// stands in for their registries.
const (
	kataDeployImage = "quay.io/kata-containers/kata-deploy-go:latest"
	nginxImage      = "docker.io/library/nginx:1.27"
	label           = "kata-containers.io/"
)

// repoRoot is the repository's root: the README's commands run there.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	must(t, err)
	return dir
}

// clusterFlavours are the flavours of the cluster's nodes: every flavour, or those
// named in KATA_E2E_CLUSTER (comma-separated; `make demo` sets it).
func clusterFlavours(t *testing.T) []testbed.Flavour {
	v := os.Getenv("KATA_E2E_CLUSTER")
	if v == "" || v == "all" {
		return testbed.Flavours()
	}
	var out []testbed.Flavour
	for _, f := range strings.Split(v, ",") {
		if !slices.Contains(testbed.Flavours(), testbed.Flavour(f)) {
			t.Fatalf("KATA_E2E_CLUSTER: unknown flavour %q (have %v)", f, testbed.Flavours())
		}
		out = append(out, testbed.Flavour(f))
	}
	return out
}

// kube is a cluster as the README's reader meets it: kubectl and a kubeconfig.
type kube struct {
	*testbed.Cluster
	cs   kubernetes.Interface
	root string
}

// sh runs a shell script (a README block) in the repository's root with the real
// kubectl on PATH and the cluster's kubeconfig, as a user would.
func (k *kube) sh(t *testing.T, timeout time.Duration, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// -e as a careful user would stop at the first failing command; not
	// pipefail, which a shell does not have by default and which would end
	// the README's `kubectl get ... | grep -q .` loop whenever grep, done
	// early, leaves kubectl a broken pipe.
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = k.root
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+k.Kubeconfig(),
		"PATH="+filepath.Dir(k.Kubectl())+":"+os.Getenv("PATH"))
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s\n%v:\n%s", script, err, out.String())
	}
	return out.String()
}

// readmeBlock returns the first ```sh block after the line containing marker.
func readmeBlock(t *testing.T, root, marker string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	must(t, err)
	_, rest, ok := strings.Cut(string(data), marker)
	if !ok {
		t.Fatalf("README.md has no %q", marker)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("README.md has no sh block after %q", marker)
	}
	block, _, _ := strings.Cut(rest, "```")
	return block
}

// buildImage builds the image with `make image`, from a payload in the kata-static
// layout whose shims are the testbed's stand-in (a containerd shim v2 that runs the
// pod with runc: no VM can run here).
func buildImage(t *testing.T, shim string) string {
	t.Helper()
	payload := t.TempDir()
	shimBin, err := os.ReadFile(shim)
	must(t, err)
	files := map[string]string{
		"opt/kata/bin/containerd-shim-kata-v2":                                             string(shimBin),
		"opt/kata/runtime-rs/bin/containerd-shim-kata-v2":                                  string(shimBin),
		"opt/kata/share/defaults/kata-containers/configuration-qemu.toml":                  "[hypervisor.qemu]\npath = \"/opt/kata/bin/qemu-system-x86_64\"\n",
		"opt/kata/share/defaults/kata-containers/configuration-clh.toml":                   "[hypervisor.clh]\npath = \"/opt/kata/bin/cloud-hypervisor\"\n",
		"opt/kata/share/defaults/kata-containers/runtime-rs/configuration-dragonball.toml": "[hypervisor.dragonball]\n",
		"opt/kata/share/kata-containers/vmlinux.container":                                 strings.Repeat("kernel\n", 1<<16),
		"opt/kata/share/kata-containers/kata-containers.img":                               strings.Repeat("image\n", 1<<18),
	}
	for p, content := range files {
		full := filepath.Join(payload, p)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.WriteFile(full, []byte(content), 0o755))
	}
	out := filepath.Join(t.TempDir(), "kata-deploy-image.tar")
	cmd := exec.Command("make", "image")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "PAYLOAD="+payload, "OUT="+out, "REF="+kataDeployImage)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, b)
	}
	return out
}

// bystanders runs an unrelated DaemonSet on every node: its pods must survive
// everything kata-deploy does, runtime and kubelet restarts included.
func (k *kube) bystanders(t *testing.T) {
	t.Helper()
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "bystander", Namespace: "default"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bystander"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "bystander"}},
				Spec: corev1.PodSpec{
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers:  []corev1.Container{{Name: "web", Image: nginxImage}},
				},
			},
		},
	}
	_, err := k.cs.AppsV1().DaemonSets("default").Create(context.Background(), ds, metav1.CreateOptions{})
	must(t, err)
	waitFor(t, 2*time.Minute, "bystander pods running on every node", func() (bool, string) {
		pods := k.pods(t, "default", "app=bystander")
		return len(pods) == len(k.Nodes()) && allRunning(pods), podSummary(pods)
	})
}

// containerState is what must not change for a pod that kata-deploy leaves alone.
type containerState struct {
	node     string
	id       string
	restarts int32
	pid      int
}

func (k *kube) containerStates(t *testing.T, namespace, selector string) map[string]containerState {
	t.Helper()
	out := map[string]containerState{}
	for _, p := range k.pods(t, namespace, selector) {
		for _, cs := range p.Status.ContainerStatuses {
			n := k.node(t, p.Spec.NodeName)
			out[p.Name+"/"+cs.Name] = containerState{node: p.Spec.NodeName, id: cs.ContainerID, restarts: cs.RestartCount, pid: containerPID(t, n, cs.ContainerID)}
		}
	}
	return out
}

// containerPID asks the node's runtime (crictl inspect) for a container's PID.
func containerPID(t *testing.T, n *testbed.Node, containerID string) int {
	t.Helper()
	_, id, _ := strings.Cut(containerID, "://")
	out, err := n.Exec(context.Background(), "crictl", "inspect", id)
	if err != nil {
		t.Fatalf("crictl inspect on %s: %v", n.Name(), err)
	}
	var v struct {
		Info struct {
			Pid int `json:"pid"`
		} `json:"info"`
	}
	must(t, json.Unmarshal(out, &v))
	return v.Info.Pid
}

func (k *kube) node(t *testing.T, name string) *testbed.Node {
	t.Helper()
	for _, n := range k.Nodes() {
		if n.Name() == name {
			return n
		}
	}
	t.Fatalf("no node %q in the cluster", name)
	return nil
}

func (k *kube) pods(t *testing.T, namespace, selector string) []corev1.Pod {
	t.Helper()
	l, err := k.cs.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	must(t, err)
	return l.Items
}

func allRunning(pods []corev1.Pod) bool {
	for _, p := range pods {
		if p.Status.Phase != corev1.PodRunning {
			return false
		}
	}
	return true
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podSummary(pods []corev1.Pod) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "%s on %s: %s ready=%v", p.Name, p.Spec.NodeName, p.Status.Phase, podReady(&p))
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Waiting != nil {
				fmt.Fprintf(&b, " (%s: %s %s)", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
			}
			fmt.Fprintf(&b, " restarts=%d", cs.RestartCount)
		}
		b.WriteString("; ")
	}
	return b.String()
}

// waitFor polls cond until it holds or d passes; the failure names what was awaited
// and cond's last word.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < d {
		ok, msg := cond()
		if ok {
			return time.Since(start)
		}
		last = msg
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s; last: %s", d, what, last)
	return 0
}

func (k *kube) nodeLabels(t *testing.T) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, n := range k.Nodes() {
		obj, err := k.cs.CoreV1().Nodes().Get(context.Background(), n.Name(), metav1.GetOptions{})
		must(t, err)
		out[n.Name()] = obj.Labels
	}
	return out
}

// unitTimes reads a unit's monotonic activation times on the node.
func unitTimes(t *testing.T, n *testbed.Node, unit string) (activeEnter, activeExit time.Duration) {
	t.Helper()
	activeEnter, activeExit, err := unitTimesCtx(context.Background(), n, unit)
	must(t, err)
	return activeEnter, activeExit
}

// standinRecords are the stand-in shim's records on a node (one JSON object a line).
func standinRecords(t *testing.T, n *testbed.Node) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(n.HostPath("/var/log/kata-standin-shim.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	must(t, err)
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stand-in shim record %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// ranWithKata reports whether the stand-in shim's records on n show a task created
// for a pod whose name starts with podPrefix, with Kata's configuration path for shim.
func ranWithKata(t *testing.T, n *testbed.Node, podPrefix, shim string) (bool, string) {
	t.Helper()
	recs := standinRecords(t, n)
	for _, r := range recs {
		blob, _ := json.Marshal(r)
		s := string(blob)
		if strings.Contains(s, podPrefix) && strings.Contains(s, "configuration-"+shim+".toml") {
			return true, s
		}
	}
	return false, fmt.Sprintf("%d records on %s, none for %s with configuration-%s.toml", len(recs), n.Name(), podPrefix, shim)
}

var updatedStamp = regexp.MustCompile(`(?m)^\s*"updated": .*\n`)

// hostPathLeftovers are the directories the DaemonSets' hostPath volumes make on a
// node that lacks them (the kubelet creates them; nothing in a pod can remove its own
// mount point): they stay, empty, after the removal. docs/manifests.md lists them.
var hostPathLeftovers = []string{"/etc/crio/", "/var/lib/kata-deploy/"}

// assertRemoved checks that a node is as it was before the install, but for empty
// directories of hostPathLeftovers.
func assertRemoved(t *testing.T, before, after map[string]string, what string) {
	t.Helper()
	for p := range after {
		if _, ok := before[p]; ok || !slices.Contains(hostPathLeftovers, p) {
			continue
		}
		for q := range after {
			if q != p && strings.HasPrefix(q, p) {
				t.Errorf("%s: %s is left with %s in it", what, p, q)
			}
		}
		delete(after, p)
	}
	assertSameFiles(t, before, after, what)
}

func runtimeKind(f testbed.Flavour) string {
	if f == testbed.CRIO {
		return "crio"
	}
	return "containerd"
}

// TestClusterQuickStart is the README's quick start on a real cluster: one node per
// runtime flavour, each with a kubelet, the DaemonSets from the image `make image`
// builds, the README's commands run verbatim with the real kubectl.
func TestClusterQuickStart(t *testing.T) {
	ctx := context.Background()
	c := testbed.StartCluster(t, clusterFlavours(t)...)
	k := &kube{Cluster: c, cs: c.AdminClient(t), root: repoRoot(t)}
	c.FollowPodLogs(t, "kube-system")
	start := time.Now()
	image := buildImage(t, c.StandinShim())
	t.Logf("figure: make image with the test payload: %s", time.Since(start).Round(100*time.Millisecond))
	must(t, c.PushOCIArchive(ctx, kataDeployImage, image))
	web, err := testbed.ToolImage("webserver")
	must(t, err)
	must(t, c.PushImage(ctx, nginxImage, web))

	k.bystanders(t)
	before := map[string]map[string]string{}
	for _, n := range c.Nodes() {
		before[n.Name()] = hostFiles(t, n, false)
	}
	bystanders := k.containerStates(t, "default", "app=bystander")

	// The quick start, verbatim.
	quickStart := readmeBlock(t, k.root, "Or with the plain manifests")
	applied := time.Now()
	t.Logf("README quick start:\n%s", k.sh(t, 2*time.Minute, quickStart))

	// Each node is labelled with its runtime, then installed; an installer pod is
	// Ready only once its node is labelled kata-runtime=true.
	waitFor(t, 5*time.Minute, "every node kata-runtime=true", func() (bool, string) {
		labels := k.nodeLabels(t)
		for _, p := range k.pods(t, "kube-system", "app.kubernetes.io/component in (installer-containerd,installer-crio)") {
			if podReady(&p) && labels[p.Spec.NodeName][label+"kata-runtime"] != "true" {
				t.Fatalf("installer pod %s is Ready before its node %s is labelled kata-runtime=true", p.Name, p.Spec.NodeName)
			}
		}
		for name, l := range labels {
			if l[label+"kata-runtime"] != "true" {
				return false, fmt.Sprintf("%s: %v; pods: %s", name, l, podSummary(k.pods(t, "kube-system", "app.kubernetes.io/name=kata-deploy")))
			}
		}
		return true, ""
	})
	t.Logf("figure: kubectl apply to every node kata-runtime=true: %s (%d nodes)", time.Since(applied).Round(100*time.Millisecond), len(c.Nodes()))
	waitFor(t, time.Minute, "installer pods Ready", func() (bool, string) {
		pods := k.pods(t, "kube-system", "app.kubernetes.io/component in (installer-containerd,installer-crio)")
		for _, p := range pods {
			if !podReady(&p) {
				return false, podSummary(pods)
			}
		}
		return len(pods) == len(c.Nodes()), podSummary(pods)
	})

	labels := k.nodeLabels(t)
	for _, n := range c.Nodes() {
		kind := runtimeKind(n.Flavour())
		if got := labels[n.Name()][label+"container-runtime"]; got != kind {
			t.Errorf("%s: container-runtime label %q, want %q", n.Name(), got, kind)
		}
	}
	// Each installer DaemonSet lands on the nodes of its runtime only, unprivileged,
	// and its container was never restarted.
	installers := k.pods(t, "kube-system", "app.kubernetes.io/component in (installer-containerd,installer-crio)")
	for _, p := range installers {
		n := k.node(t, p.Spec.NodeName)
		want := "installer-" + runtimeKind(n.Flavour())
		if got := p.Labels["app.kubernetes.io/component"]; got != want {
			t.Errorf("pod %s (%s) runs on %s, a %s node", p.Name, got, n.Name(), n.Flavour())
		}
		for _, ctr := range p.Spec.Containers {
			if sc := ctr.SecurityContext; sc == nil || sc.Privileged == nil || *sc.Privileged {
				t.Errorf("pod %s container %s is privileged", p.Name, ctr.Name)
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount != 0 {
				t.Errorf("installer %s on %s restarted %d times", p.Name, n.Name(), cs.RestartCount)
			}
		}
	}
	handlers := []string{"kata", "kata-qemu", "kata-clh", "kata-dragonball"}
	for _, n := range c.Nodes() {
		// The runtime was restarted once, through systemd, by the pod it runs.
		enter, exit := unitTimes(t, n, n.RuntimeUnit())
		if count := starts(t, n, n.RuntimeUnit(), applied); count != 1 {
			t.Errorf("%s: %s was started %d times since the apply, want once", n.Name(), n.RuntimeUnit(), count)
		} else {
			t.Logf("figure: %s (%s): runtime down for %s during the restart", n.Name(), n.Flavour(), (enter - exit).Round(time.Millisecond))
		}
		got, err := n.RuntimeHandlers(ctx)
		must(t, err)
		obj, err := k.cs.CoreV1().Nodes().Get(ctx, n.Name(), metav1.GetOptions{})
		must(t, err)
		var onNode []string
		for _, h := range obj.Status.RuntimeHandlers {
			onNode = append(onNode, h.Name)
		}
		for _, h := range handlers {
			// containerd 1.6 reports no handlers over CRI, so the kubelet lists none.
			if n.Flavour() != testbed.Containerd16 && !slices.Contains(onNode, h) {
				t.Errorf("%s: Node status.runtimeHandlers %v lacks %s", n.Name(), onNode, h)
			}
			// The runtime itself serves them, 1.6 included (its CRI config).
			if !slices.Contains(got, h) {
				t.Errorf("%s: the runtime does not serve %s (serves %v)", n.Name(), h, got)
			}
		}
	}
	k.assertBystanders(t, bystanders, "the install")
	k.installerMemory(t)

	// The example workload runs through the Kata handler.
	k.sh(t, time.Minute, "kubectl apply -f examples/nginx-kata.yaml")
	var nginxNode *testbed.Node
	waitFor(t, 3*time.Minute, "examples/nginx-kata.yaml running", func() (bool, string) {
		pods := k.pods(t, "default", "app=nginx-kata")
		if len(pods) == 1 && pods[0].Status.Phase == corev1.PodRunning {
			nginxNode = k.node(t, pods[0].Spec.NodeName)
			return true, ""
		}
		return false, podSummary(pods)
	})
	if ok, msg := ranWithKata(t, nginxNode, "nginx-kata", "qemu"); !ok {
		t.Errorf("nginx-kata did not run through the Kata shim: %s", msg)
	}
	// And on every node: a pod per node with the kata RuntimeClass.
	for _, n := range c.Nodes() {
		k.kataPodOn(t, n)
	}

	// A rolling update of the installers changes nothing on the nodes.
	mid := map[string]map[string]string{}
	runtimeMid := map[string]time.Duration{}
	for _, n := range c.Nodes() {
		mid[n.Name()] = hostFiles(t, n, true)
		runtimeMid[n.Name()], _ = unitTimes(t, n, n.RuntimeUnit())
	}
	oldInstallers := map[string]bool{}
	for _, p := range installers {
		oldInstallers[string(p.UID)] = true
	}
	rolled := time.Now()
	var sets []string
	for _, ds := range []string{"kata-deploy-containerd", "kata-deploy-crio"} {
		sets = append(sets, "daemonset/"+ds)
	}
	k.sh(t, time.Minute, "kubectl -n kube-system set env "+strings.Join(sets, " ")+" KATA_VERIFY_TIMEOUT=3m")
	for _, ds := range sets {
		k.sh(t, 5*time.Minute, "kubectl -n kube-system rollout status --timeout=5m "+ds)
	}
	// The rollout surges: an old pod stops once its replacement is Ready,
	// so it may still be stopping when the rollout says it is done.
	waitFor(t, time.Minute, "the old installer pods gone", func() (bool, string) {
		var left []string
		for _, p := range k.pods(t, "kube-system", "app.kubernetes.io/component in (installer-containerd,installer-crio)") {
			if oldInstallers[string(p.UID)] {
				left = append(left, p.Name)
			}
		}
		return len(left) == 0, fmt.Sprint(left)
	})
	t.Logf("figure: rolling update of the installers: %s", time.Since(rolled).Round(100*time.Millisecond))
	for _, n := range c.Nodes() {
		assertSameFiles(t, mid[n.Name()], hostFiles(t, n, true), n.Name()+": the rolling update")
		if enter, _ := unitTimes(t, n, n.RuntimeUnit()); enter != runtimeMid[n.Name()] {
			t.Errorf("%s: the rolling update restarted %s", n.Name(), n.RuntimeUnit())
		}
	}
	for name, l := range k.nodeLabels(t) {
		if l[label+"kata-runtime"] != "true" {
			t.Errorf("%s: kata-runtime=%q after the rolling update", name, l[label+"kata-runtime"])
		}
	}

	// The README's removal sequence, verbatim.
	removal := readmeBlock(t, k.root, "Kata in this order")
	removing := time.Now()
	t.Logf("README removal:\n%s", k.sh(t, 12*time.Minute, removal))
	t.Logf("figure: README removal sequence, kubectl delete to clean nodes: %s", time.Since(removing).Round(100*time.Millisecond))
	for _, n := range c.Nodes() {
		assertRemoved(t, before[n.Name()], hostFiles(t, n, false), n.Name()+": install then the README's removal")
	}
	for name, l := range k.nodeLabels(t) {
		for key := range l {
			if strings.HasPrefix(key, label) {
				t.Errorf("%s: label %s=%s left behind", name, key, l[key])
			}
		}
	}
	for _, kind := range []string{"kata", "kata-qemu", "kata-clh", "kata-dragonball"} {
		if _, err := k.cs.NodeV1().RuntimeClasses().Get(ctx, kind, metav1.GetOptions{}); err == nil {
			t.Errorf("RuntimeClass %s left behind", kind)
		}
	}
	k.waitNoKataDeployPods(t)
	k.assertBystanders(t, bystanders, "the removal (runtime and kubelet restarts)")
}

// waitNoKataDeployPods waits until the garbage collector has removed the pods of the
// deleted DaemonSets (kubectl delete returns before it has).
func (k *kube) waitNoKataDeployPods(t *testing.T) {
	t.Helper()
	waitFor(t, 2*time.Minute, "no kata-deploy pod left", func() (bool, string) {
		pods := k.pods(t, "kube-system", "app.kubernetes.io/name=kata-deploy")
		return len(pods) == 0, podSummary(pods)
	})
}

// assertBystanders checks that the bystander containers are the same processes.
func (k *kube) assertBystanders(t *testing.T, want map[string]containerState, what string) {
	t.Helper()
	got := k.containerStates(t, "default", "app=bystander")
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: bystander %s is gone", what, name)
		case g != w:
			t.Errorf("%s: bystander %s changed: %+v, was %+v", what, name, g, w)
		}
	}
}

// kataPodOn runs a pod with the kata RuntimeClass pinned to n and checks the stand-in
// shim ran it with Kata's configuration.
func (k *kube) kataPodOn(t *testing.T, n *testbed.Node) {
	t.Helper()
	ctx := context.Background()
	name := "kata-on-" + n.Name()
	rc := "kata"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "kata-probe"}},
		Spec: corev1.PodSpec{
			RuntimeClassName: &rc,
			NodeName:         n.Name(),
			Containers:       []corev1.Container{{Name: "web", Image: nginxImage}},
		},
	}
	_, err := k.cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	must(t, err)
	waitFor(t, 2*time.Minute, name+" running", func() (bool, string) {
		p, err := k.cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == corev1.PodRunning, podSummary([]corev1.Pod{*p})
	})
	if ok, msg := ranWithKata(t, n, name, "qemu"); !ok {
		t.Errorf("%s did not run through the Kata shim: %s", name, msg)
	}
	must(t, k.cs.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}))
	waitFor(t, 2*time.Minute, name+" deleted", func() (bool, string) {
		_, err := k.cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		return err != nil, "still there"
	})
}

// installerMemory reports each installer container's peak memory (cgroup v1
// max_usage_in_bytes) against its limit.
func (k *kube) installerMemory(t *testing.T) {
	t.Helper()
	for _, p := range k.pods(t, "kube-system", "app.kubernetes.io/component in (installer-containerd,installer-crio)") {
		n := k.node(t, p.Spec.NodeName)
		for _, cs := range p.Status.ContainerStatuses {
			pid := containerPID(t, n, cs.ContainerID)
			// Read inside the node: cgroup paths are relative to its cgroup namespace.
			cg, err := n.Exec(context.Background(), "cat", fmt.Sprintf("/proc/%d/cgroup", pid))
			if err != nil {
				t.Logf("figure: %s: no cgroup for pid %d: %v", p.Name, pid, err)
				continue
			}
			for _, l := range strings.Split(string(cg), "\n") {
				f := strings.SplitN(l, ":", 3)
				if len(f) == 3 && slices.Contains(strings.Split(f[1], ","), "memory") {
					peak, _ := n.Exec(context.Background(), "cat", "/sys/fs/cgroup/memory"+f[2]+"/memory.max_usage_in_bytes")
					limit := p.Spec.Containers[0].Resources.Limits.Memory()
					t.Logf("figure: installer %s on %s (%s): peak memory %s MiB of a %s limit", p.Name, n.Name(), n.Flavour(),
						mib(strings.TrimSpace(string(peak))), limit)
				}
			}
		}
	}
}

func mib(bytes string) string {
	n, err := strconv.ParseFloat(bytes, 64)
	if err != nil {
		return "?"
	}
	return strconv.FormatFloat(n/(1<<20), 'f', 1, 64)
}

// TestClusterUntrusted is the original annotation flow on a containerd 1.6 node: the
// installers in KATA_MODE=untrusted (the README's instruction: set it in the
// manifest), then examples/nginx-untrusted.yaml, whose annotation alone routes the
// pod to Kata.
func TestClusterUntrusted(t *testing.T) {
	ctx := context.Background()
	c := testbed.StartCluster(t, testbed.Containerd16)
	k := &kube{Cluster: c, cs: c.AdminClient(t), root: repoRoot(t)}
	c.FollowPodLogs(t, "kube-system")
	must(t, c.PushOCIArchive(ctx, kataDeployImage, buildImage(t, c.StandinShim())))
	web, err := testbed.ToolImage("webserver")
	must(t, err)
	must(t, c.PushImage(ctx, nginxImage, web))
	n := c.Nodes()[0]
	before := hostFiles(t, n, false)

	manifest, err := os.ReadFile(filepath.Join(k.root, "deploy/kata-deploy.yaml"))
	must(t, err)
	untrusted := strings.ReplaceAll(string(manifest), "- name: KATA_MODE\n              value: runtimeclass", "- name: KATA_MODE\n              value: untrusted")
	if untrusted == string(manifest) {
		t.Fatal("deploy/kata-deploy.yaml has no KATA_MODE=runtimeclass to change")
	}
	edited := filepath.Join(t.TempDir(), "kata-deploy-untrusted.yaml")
	must(t, os.WriteFile(edited, []byte(untrusted), 0o644))
	k.sh(t, time.Minute, "kubectl apply -f deploy/kata-rbac.yaml -f "+edited)
	waitFor(t, 5*time.Minute, n.Name()+" kata-runtime=true", func() (bool, string) {
		l := k.nodeLabels(t)[n.Name()]
		return l[label+"kata-runtime"] == "true", fmt.Sprintf("%v; %s", l, podSummary(k.pods(t, "kube-system", "app.kubernetes.io/name=kata-deploy")))
	})

	k.sh(t, time.Minute, "kubectl apply -f examples/nginx-untrusted.yaml")
	waitFor(t, 3*time.Minute, "examples/nginx-untrusted.yaml running", func() (bool, string) {
		pods := k.pods(t, "default", "app=nginx-untrusted")
		return len(pods) == 1 && pods[0].Status.Phase == corev1.PodRunning, podSummary(pods)
	})
	if ok, msg := ranWithKata(t, n, "nginx-untrusted", "qemu"); !ok {
		t.Errorf("nginx-untrusted did not run through the Kata shim: %s", msg)
	}

	k.sh(t, 12*time.Minute, `kubectl delete -f examples/nginx-untrusted.yaml
kubectl delete -f `+edited+`
kubectl -n kube-system wait --for=delete pod -l app.kubernetes.io/name=kata-deploy --timeout=10m
kubectl apply -f deploy/kata-cleanup.yaml
while kubectl get nodes -l kata-containers.io/kata-runtime=cleanup -o name | grep -q .; do sleep 5; done
kubectl delete -f deploy/kata-cleanup.yaml -f deploy/kata-rbac.yaml`)
	assertRemoved(t, before, hostFiles(t, n, false), n.Name()+": untrusted install then removal")
}
