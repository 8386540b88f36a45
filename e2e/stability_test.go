package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

// fault is what a real node does to an install that an idle test machine
// never shows, and how many runtime starts it causes itself.
type fault struct {
	name string
	opts []testbed.ClusterOption
	// busy saturates every CPU for the whole quick start and removal.
	busy bool
	// during runs from the apply on, on its own goroutine, and returns
	// the runtime starts it caused on each node (a SIGKILL is restarted
	// by systemd, not by kata-deploy).
	during func(ctx context.Context, k *kube, pre map[string]unitState) (map[string]int, error)
}

// unitState is a runtime unit's activation times before the apply.
type unitState struct{ enter, exit time.Duration }

// slowStart is a runtime that takes this long to start, on every node: a
// big node with hundreds of containers to restore (issue 18 used 6 s).
const slowStart = 10 * time.Second

// TestClusterUnderFaults is the README's quick start and removal, verbatim,
// on a cluster of every runtime flavour under what real nodes do to an
// install: a slow runtime restart, a saturated CPU, a kubelet restart, an
// API server outage, the runtime SIGKILLed, the installer SIGKILLed. Each
// must end as on an idle machine: the runtime started once per node for
// the install (plus what the fault itself started), the runtime label set
// once and never changed, no installer deleted or uninstalling, every
// node kata-runtime=true, and the removal byte-identical with no label
// left.
func TestClusterUnderFaults(t *testing.T) {
	for _, f := range []fault{
		{name: "slow-runtime-restart", opts: []testbed.ClusterOption{testbed.WithSlowRuntimeStart(slowStart)}},
		{name: "busy-cpu", busy: true},
		{name: "kubelet-restart-while-verifying", during: onRuntimeRestarted(func(ctx context.Context, n *testbed.Node) (int, error) {
			_, err := n.Exec(ctx, "systemctl", "restart", "kubelet")
			return 0, err
		})},
		{name: "api-server-down-60s", opts: []testbed.ClusterOption{testbed.WithSlowRuntimeStart(slowStart)}, during: apiOutage(time.Minute)},
		{name: "runtime-sigkill-while-verifying", during: onRuntimeRestarted(func(ctx context.Context, n *testbed.Node) (int, error) {
			_, err := n.Exec(ctx, "systemctl", "kill", "--signal=KILL", n.RuntimeUnit())
			return 1, err
		})},
		{name: "installer-sigkill-while-restarting", opts: []testbed.ClusterOption{testbed.WithSlowRuntimeStart(slowStart)},
			during: onRuntimeStopped(killInstaller)},
	} {
		t.Run(f.name, func(t *testing.T) { underFault(t, f) })
	}
}

func underFault(t *testing.T, f fault) {
	ctx := context.Background()
	c := testbed.StartClusterWith(t, clusterFlavours(t), f.opts...)
	k := &kube{Cluster: c, cs: c.AdminClient(t), root: repoRoot(t)}
	c.FollowPodLogs(t, "kube-system")
	must(t, c.PushOCIArchive(ctx, kataDeployImage, buildImage(t, c.StandinShim())))
	web, err := testbed.ToolImage("webserver")
	must(t, err)
	must(t, c.PushImage(ctx, nginxImage, web))
	if f.busy {
		testbed.BusyCPU(t)
	}
	before := map[string]map[string]string{}
	pre := map[string]unitState{}
	for _, n := range c.Nodes() {
		before[n.Name()] = hostFiles(t, n, false)
		enter, exit := unitTimes(t, n, n.RuntimeUnit())
		pre[n.Name()] = unitState{enter, exit}
	}
	labels := k.watchRuntimeLabels(t)

	applied := time.Now()
	k.sh(t, 2*time.Minute, readmeBlock(t, k.root, "Or with the plain manifests"))
	type result struct {
		starts map[string]int
		err    error
	}
	faulted := make(chan result, 1)
	if f.during != nil {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		go func() {
			starts, err := f.during(fctx, k, pre)
			faulted <- result{starts, err}
		}()
	} else {
		faulted <- result{}
	}

	installers := map[string][]string{} // node -> installer pod UIDs seen
	took := waitFor(t, 8*time.Minute, "every node kata-runtime=true", func() (bool, string) {
		// The API server may be down (a fault): ask with a deadline, and
		// ask again later.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		pods, err := k.cs.CoreV1().Pods("kube-system").List(actx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=kata-deploy"})
		if err != nil {
			return false, "API server: " + err.Error()
		}
		for _, p := range pods.Items {
			if c := p.Labels["app.kubernetes.io/component"]; c == "installer-containerd" || c == "installer-crio" {
				if !slices.Contains(installers[p.Spec.NodeName], string(p.UID)) {
					installers[p.Spec.NodeName] = append(installers[p.Spec.NodeName], string(p.UID))
				}
			}
		}
		nodes, err := k.cs.CoreV1().Nodes().List(actx, metav1.ListOptions{})
		if err != nil {
			return false, "API server: " + err.Error()
		}
		for _, n := range nodes.Items {
			if n.Labels[label+"kata-runtime"] != "true" {
				return false, fmt.Sprintf("%s: %v; pods: %s", n.Name, n.Labels, podSummary(pods.Items))
			}
		}
		return true, ""
	})
	r := <-faulted
	if r.err != nil {
		t.Fatalf("the fault: %v", r.err)
	}
	t.Logf("figure: %s: kubectl apply to every node kata-runtime=true: %s", f.name, took.Round(100*time.Millisecond))
	// Whatever the fault did, let it settle: a label or an uninstall
	// that would follow comes now or never.
	time.Sleep(15 * time.Second)

	for _, n := range c.Nodes() {
		want := 1 + r.starts[n.Name()]
		got := starts(t, n, n.RuntimeUnit(), applied)
		if got != want {
			t.Errorf("%s: %s was started %d times since the apply, want %d (one install restart, %d by the fault)", n.Name(), n.RuntimeUnit(), got, want, r.starts[n.Name()])
		}
		kind := runtimeKind(n.Flavour())
		if seq := labels.changes(n.Name()); !slices.Equal(seq, []string{kind}) {
			t.Errorf("%s: the runtime label went through %q, want it set once to %q", n.Name(), seq, kind)
		}
		if uids := installers[n.Name()]; len(uids) != 1 {
			t.Errorf("%s: %d installer pods ran (%v): one was deleted during the install", n.Name(), len(uids), uids)
		}
		for _, e := range nodeEvents(t, k.cs, n.Name()) {
			switch e.Reason {
			case "KataUninstallStarted", "KataRemovalConfirmed", "KataInstallFailed":
				t.Errorf("%s: event %s during the install: %s", n.Name(), e.Reason, e.Message)
			}
		}
		t.Logf("figure: %s: %s (%s): runtime starts %d (want %d), runtime label changes after the first: %d",
			f.name, n.Name(), n.Flavour(), got, want, len(labels.changes(n.Name()))-1)
	}
	for _, n := range c.Nodes() {
		if _, err := n.RuntimeHandlers(ctx); err != nil {
			t.Errorf("%s: the runtime does not answer after the install: %v", n.Name(), err)
		}
	}
	labels.stop()

	// The README's example runs through the Kata handler.
	k.sh(t, time.Minute, "kubectl apply -f examples/nginx-kata.yaml")
	waitFor(t, 3*time.Minute, "examples/nginx-kata.yaml running", func() (bool, string) {
		pods := k.pods(t, "default", "app=nginx-kata")
		return len(pods) == 1 && pods[0].Status.Phase == corev1.PodRunning, podSummary(pods)
	})

	removing := time.Now()
	k.sh(t, 12*time.Minute, readmeBlock(t, k.root, "Kata in this order"))
	t.Logf("figure: %s: README removal, kubectl delete to clean nodes: %s", f.name, time.Since(removing).Round(100*time.Millisecond))
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
	k.waitNoKataDeployPods(t)
}

// onRuntimeRestarted runs act on each node once the installer's restart
// of its runtime has finished (the unit entered active again): the
// installer is verifying then.
func onRuntimeRestarted(act func(context.Context, *testbed.Node) (int, error)) func(context.Context, *kube, map[string]unitState) (map[string]int, error) {
	return onEachNode(func(pre unitState, enter, _ time.Duration) bool { return enter != pre.enter }, act)
}

// onRuntimeStopped runs act on each node once the installer's restart of
// its runtime has begun (the unit left active): with a slow start, the
// runtime is starting for a while then.
func onRuntimeStopped(act func(context.Context, *testbed.Node) (int, error)) func(context.Context, *kube, map[string]unitState) (map[string]int, error) {
	return onEachNode(func(pre unitState, _, exit time.Duration) bool { return exit != pre.exit }, act)
}

// onEachNode waits on every node, concurrently, until the runtime unit's
// activation times satisfy ready, then runs act there.
func onEachNode(ready func(pre unitState, enter, exit time.Duration) bool, act func(context.Context, *testbed.Node) (int, error)) func(context.Context, *kube, map[string]unitState) (map[string]int, error) {
	return func(ctx context.Context, k *kube, pre map[string]unitState) (map[string]int, error) {
		var mu sync.Mutex
		out := map[string]int{}
		var errs []error
		var wg sync.WaitGroup
		for _, n := range k.Nodes() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n0 := pre[n.Name()]
				for {
					enter, exit, err := unitTimesCtx(ctx, n, n.RuntimeUnit())
					if err == nil && ready(n0, enter, exit) {
						break
					}
					select {
					case <-ctx.Done():
						mu.Lock()
						errs = append(errs, fmt.Errorf("%s: the runtime was never restarted: %w", n.Name(), ctx.Err()))
						mu.Unlock()
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
				extra, err := act(ctx, n)
				mu.Lock()
				defer mu.Unlock()
				out[n.Name()] = extra
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", n.Name(), err))
				}
			}()
		}
		wg.Wait()
		if len(errs) > 0 {
			return nil, fmt.Errorf("%v", errs)
		}
		return out, nil
	}
}

// apiOutage stops the API server for d once the first node's runtime is
// being restarted by its installer: mid-install.
func apiOutage(d time.Duration) func(context.Context, *kube, map[string]unitState) (map[string]int, error) {
	return func(ctx context.Context, k *kube, pre map[string]unitState) (map[string]int, error) {
		for {
			for _, n := range k.Nodes() {
				if _, exit, err := unitTimesCtx(ctx, n, n.RuntimeUnit()); err == nil && exit != pre[n.Name()].exit {
					return nil, k.StopAPIServer(ctx, d)
				}
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("no runtime was restarted: %w", ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// killInstaller SIGKILLs the installer's process on n, as the OOM killer
// or a node problem would: its pod restarts it. The runtime may be down
// (restarting), so the process is found in the node's /proc, not by CRI.
func killInstaller(ctx context.Context, n *testbed.Node) (int, error) {
	out, err := n.Exec(ctx, "sh", "-c", `for p in /proc/[0-9]*; do
  if [ "$(cat $p/comm 2>/dev/null)" = kata-installer ]; then kill -KILL ${p#/proc/} && echo ${p#/proc/}; fi
done`)
	if err != nil {
		return 0, err
	}
	if pids := strings.Fields(string(out)); len(pids) != 1 {
		return 0, fmt.Errorf("want one installer process killed, killed %q", pids)
	}
	return 0, nil
}

// unitTimesCtx reads a unit's monotonic activation times on the node,
// for a caller that cannot fail the test (a fault's goroutine).
func unitTimesCtx(ctx context.Context, n *testbed.Node, unit string) (activeEnter, activeExit time.Duration, err error) {
	out, err := n.Exec(ctx, "systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "-p", "ActiveExitTimestampMonotonic", unit)
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(l, "=")
		us, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "ActiveEnterTimestampMonotonic":
			activeEnter = time.Duration(us) * time.Microsecond
		case "ActiveExitTimestampMonotonic":
			activeExit = time.Duration(us) * time.Microsecond
		}
	}
	return activeEnter, activeExit, nil
}

// labelWatch records every value the runtime label of each Node takes,
// from a watch of the Nodes that resumes from its last resourceVersion
// after an API server outage, so no change is missed.
type labelWatch struct {
	mu     sync.Mutex
	seen   map[string][]string
	cancel context.CancelFunc
	done   chan struct{}
}

func (k *kube) watchRuntimeLabels(t *testing.T) *labelWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &labelWatch{seen: map[string][]string{}, cancel: cancel, done: make(chan struct{})}
	list, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	must(t, err)
	for _, n := range list.Items {
		w.record(&n)
	}
	rv := list.ResourceVersion
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			wi, err := k.cs.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				time.Sleep(500 * time.Millisecond)
				continue
			}
			for ev := range wi.ResultChan() {
				n, ok := ev.Object.(*corev1.Node)
				if !ok {
					continue
				}
				rv = n.ResourceVersion
				if ev.Type == watch.Added || ev.Type == watch.Modified {
					w.record(n)
				}
			}
			wi.Stop()
		}
	}()
	t.Cleanup(w.stop)
	return w
}

// record notes the Node's runtime label value ("" when absent) when it
// differs from the last one seen.
func (w *labelWatch) record(n *corev1.Node) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := n.Labels[runtimeLabel]
	seq := w.seen[n.Name]
	if len(seq) == 0 && v == "" {
		return
	}
	if len(seq) == 0 || seq[len(seq)-1] != v {
		w.seen[n.Name] = append(seq, v)
	}
}

// changes is the sequence of values the node's runtime label took.
func (w *labelWatch) changes(node string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen[node])
}

func (w *labelWatch) stop() {
	w.cancel()
	<-w.done
}

// TestClusterRemovalOfFailedInstall: a node whose install never succeeds
// (its runtime refuses any config that names Kata, so every attempt rolls
// back) still ends the README's removal with no kata-deploy label and its
// config byte-identical (issue 18: the runtime label used to stay, as the
// cleanup only visits nodes an installer marked).
func TestClusterRemovalOfFailedInstall(t *testing.T) {
	ctx := context.Background()
	c := testbed.StartClusterWith(t, []testbed.Flavour{testbed.Containerd2},
		testbed.WithEachNode(func(f testbed.Flavour) []testbed.NodeOption { return []testbed.NodeOption{refuseKata(f)} }))
	k := &kube{Cluster: c, cs: c.AdminClient(t), root: repoRoot(t)}
	c.FollowPodLogs(t, "kube-system")
	must(t, c.PushOCIArchive(ctx, kataDeployImage, buildImage(t, c.StandinShim())))
	n := c.Nodes()[0]
	before := hostFiles(t, n, false)

	k.sh(t, 2*time.Minute, readmeBlock(t, k.root, "Or with the plain manifests"))
	k.sh(t, time.Minute, "kubectl apply -f examples/nginx-kata.yaml") // pending: no node runs Kata
	waitFor(t, 5*time.Minute, "the install to fail on "+n.Name(), func() (bool, string) {
		failed := false
		for _, e := range nodeEvents(t, k.cs, n.Name()) {
			failed = failed || e.Reason == "KataInstallFailed"
		}
		l := k.nodeLabels(t)[n.Name()]
		return failed && l[runtimeLabel] == "containerd", fmt.Sprintf("labels %v", l)
	})
	if got := k.nodeLabels(t)[n.Name()][kataLabel]; got == "true" {
		t.Fatalf("%s is labelled %s=true although its runtime refuses Kata", n.Name(), kataLabel)
	}

	k.sh(t, 12*time.Minute, readmeBlock(t, k.root, "Kata in this order"))
	assertRemoved(t, before, hostFiles(t, n, false), n.Name()+": a failed install, then the README's removal")
	for key, v := range k.nodeLabels(t)[n.Name()] {
		if strings.HasPrefix(key, label) {
			t.Errorf("%s: label %s=%s left behind", n.Name(), key, v)
		}
	}
	k.waitNoKataDeployPods(t)
}
