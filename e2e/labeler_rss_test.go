package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

// BenchmarkLabelerIdleRSS measures the resident memory of the real
// kata-labeler binary, as shipped, watching its Node on a real API server
// after it has labelled it (target: under 20 MiB).
func BenchmarkLabelerIdleRSS(b *testing.B) {
	testbed.Require(b)
	cp := testbed.StartControlPlane(b)
	admin := cp.AdminClient(b)
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "rss-node"}}
	node, err := admin.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	node.Status.NodeInfo.ContainerRuntimeVersion = "containerd://1.7.22"
	if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, kubeconfigFor(b, cp), 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		cmd := exec.Command(filepath.Join(binDir, "kata-labeler"), "--node-name", "rss-node", "--kubeconfig", kc, "--health-addr", "")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			n, err := admin.CoreV1().Nodes().Get(ctx, "rss-node", metav1.GetOptions{})
			if err == nil && n.Labels[runtimeLabel] == "containerd" {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				b.Fatal("kata-labeler did not label the node")
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(5 * time.Second) // idle: watching, nothing to do
		rss := vmRSS(b, cmd.Process.Pid)
		cmd.Process.Kill()
		cmd.Wait()
		b.ReportMetric(float64(rss)/1024, "MiB-RSS")
		b.Logf("kata-labeler idle RSS: %.1f MiB", float64(rss)/1024)
	}
}

func kubeconfigFor(b *testing.B, cp *testbed.ControlPlane) []byte {
	data, err := os.ReadFile(cp.Kubeconfig())
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// vmRSS returns a process's resident set size in KiB.
func vmRSS(b *testing.B, pid int) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return kb
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
