package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/deploy/helm"
	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

// TestClusterHelm is the Helm quick start on a real cluster: helm install labels
// every node kata-runtime=true; changing a value the installer reads rolls the
// installers without restarting a runtime whose config did not change; helm
// uninstall alone runs the whole removal (its pre-delete hook) and leaves every
// node as it was.
func TestClusterHelm(t *testing.T) {
	ctx := context.Background()
	c := testbed.StartCluster(t, testbed.Containerd2, testbed.CRIO)
	k := &kube{Cluster: c, cs: c.AdminClient(t), root: repoRoot(t)}
	c.FollowPodLogs(t, "kube-system")
	must(t, c.PushOCIArchive(ctx, kataDeployImage, buildImage(t, c.StandinShim())))
	before := map[string]map[string]string{}
	for _, n := range c.Nodes() {
		before[n.Name()] = hostFiles(t, n, false)
	}
	rel := helm.Release{Kubeconfig: c.Kubeconfig(), Namespace: "kube-system", Timeout: 10 * time.Minute}

	start := time.Now()
	must(t, rel.Install(ctx, nil))
	k.waitKataRuntime(t, "true")
	t.Logf("figure: helm install to every node kata-runtime=true: %s", time.Since(start).Round(100*time.Millisecond))

	// debug changes Kata's own drop-ins in the payload, not the runtime's config:
	// the installers roll and no runtime restarts.
	mid := map[string]time.Duration{}
	for _, n := range c.Nodes() {
		mid[n.Name()], _ = unitTimes(t, n, n.RuntimeUnit())
	}
	old := map[string]bool{}
	installers := "app.kubernetes.io/component in (installer-containerd,installer-crio)"
	for _, p := range k.pods(t, "kube-system", installers) {
		old[string(p.UID)] = true
	}
	must(t, rel.Upgrade(ctx, map[string]any{"debug": true}))
	waitFor(t, 5*time.Minute, "installers rolled and Ready", func() (bool, string) {
		pods := k.pods(t, "kube-system", installers)
		for _, p := range pods {
			if old[string(p.UID)] || !podReady(&p) {
				return false, podSummary(pods)
			}
		}
		return len(pods) == len(c.Nodes()), podSummary(pods)
	})
	for _, n := range c.Nodes() {
		if enter, _ := unitTimes(t, n, n.RuntimeUnit()); enter != mid[n.Name()] {
			t.Errorf("%s: changing debug restarted %s, whose config did not change", n.Name(), n.RuntimeUnit())
		}
		if out, err := n.Exec(ctx, "grep", "-rl", "enable_debug", "/opt/kata/share/defaults/kata-containers/"); err != nil || len(out) == 0 {
			t.Errorf("%s: debug=true wrote no Kata debug drop-in: %v", n.Name(), err)
		}
	}
	k.waitKataRuntime(t, "true")

	removing := time.Now()
	must(t, rel.Uninstall(ctx))
	t.Logf("figure: helm uninstall to clean nodes: %s", time.Since(removing).Round(100*time.Millisecond))
	for _, n := range c.Nodes() {
		assertRemoved(t, before[n.Name()], hostFiles(t, n, false), n.Name()+": helm install, upgrade and uninstall")
	}
	for name, l := range k.nodeLabels(t) {
		for key := range l {
			if len(key) > len(label) && key[:len(label)] == label {
				t.Errorf("%s: label %s=%s left behind", name, key, l[key])
			}
		}
	}
	k.waitNoKataDeployPods(t)
}

// waitKataRuntime waits until every node's kata-runtime label is want.
func (k *kube) waitKataRuntime(t *testing.T, want string) {
	t.Helper()
	waitFor(t, 5*time.Minute, "every node kata-runtime="+want, func() (bool, string) {
		for name, l := range k.nodeLabels(t) {
			if l[label+"kata-runtime"] != want {
				return false, fmt.Sprintf("%s: %v; pods: %s", name, l, podSummary(k.pods(t, "kube-system", "app.kubernetes.io/name=kata-deploy")))
			}
		}
		return true, ""
	})
}
