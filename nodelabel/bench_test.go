package nodelabel_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
	"github.com/kata-deploy/kata-deploy/nodelabel"
)

var (
	benchNodes     = flag.Int("bench-nodes", 1000, "BenchmarkLabelers: number of Nodes, one labeler each")
	benchShared    = flag.Bool("bench-shared-transport", false, "BenchmarkLabelers: let the labelers share client-go's cached transport (one process) instead of one connection each (one pod each)")
	benchSteadyFor = flag.Duration("bench-steady", 10*time.Second, "BenchmarkLabelers: how long to watch the steady state")
)

// BenchmarkLabelers runs one runtime labeler per Node, as the labeler
// DaemonSet would, against the real API server: each with its own
// clientset, connection, watch and request counter, all acting as one
// ServiceAccount bound to LabelerRules. It reports the requests per node
// and the time to converge after each kind of change. Run it once:
//
//	go test ./nodelabel -run '^$' -bench Labelers -benchtime 1x
func BenchmarkLabelers(b *testing.B) {
	n := *benchNodes
	cp := testbed.StartControlPlane(b)
	adminCfg := cp.AdminConfig()
	adminCfg.QPS, adminCfg.Burst = 5000, 10000
	admin, err := kubernetes.NewForConfig(adminCfg)
	if err != nil {
		b.Fatal(err)
	}
	sa := bindServiceAccount(b, cp, admin, "bench-labeler", nodelabel.LabelerRules())

	names := make([]string, n)
	want := map[string]string{}
	for i := range names {
		names[i] = fmt.Sprintf("bench-%04d", i)
		want[names[i]] = "containerd"
	}
	start := time.Now()
	parallel(n, 32, func(i int) {
		runtime := "containerd://1.7.22"
		createNode(b, admin, names[i], runtime, nil)
		setReady(b, admin, names[i], corev1.ConditionTrue)
	})
	b.Logf("created %d Nodes in %s", n, time.Since(start).Round(time.Millisecond))

	obs := newObserver(b, admin, want)

	counters := make([]*requestCounter, n)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	for i := range counters {
		counters[i] = newRequestCounter()
	}
	zero := snapshot(counters)
	b.ResetTimer()
	for i, name := range names {
		cfg := counters[i].wrap(sa)
		if !*benchShared {
			// A custom dialer makes client-go skip its transport cache:
			// one TLS connection per labeler, as one per pod.
			cfg.Dial = (&net.Dialer{Timeout: 30 * time.Second}).DialContext
		}
		api, err := nodelabel.NewAPI(cfg)
		if err != nil {
			b.Fatal(err)
		}
		// No settle time: the benchmark measures how fast the labelers
		// follow a change, not the wait that keeps them off transients.
		c, err := nodelabel.New(api, name, nodelabel.WithSettle(0))
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.RunRuntimeLabeler(ctx) }()
	}
	phase := func(what string, before counts, change func(), expect int) {
		b.Helper()
		if before == nil {
			before = snapshot(counters)
		}
		t0 := time.Now()
		change()
		changed := time.Since(t0)
		if err := obs.wait(2 * time.Minute); err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		took := time.Since(t0)
		settleFor := time.Second
		time.Sleep(settleFor)
		d := snapshot(counters).minus(before)
		b.Logf("%-28s converged in %8s (change itself %s); requests: %s; PATCH per node min/max %d/%d",
			what, took.Round(time.Millisecond), changed.Round(time.Millisecond), d.total(), d.min("PATCH nodes"), d.max("PATCH nodes"))
		// Writes the server accepted: PATCH requests less the ones it
		// refused (429) and client-go sent again.
		accepted := d.sum("PATCH nodes") - d.refused("PATCH nodes")
		if accepted != expect {
			b.Errorf("%s: %d PATCH requests accepted, want %d", what, accepted, expect)
		}
		b.ReportMetric(took.Seconds(), strings.ReplaceAll(what, " ", "-")+"-s")
	}

	phase("start (label every node)", zero, func() {}, n)

	// Steady state: kubelet-like heartbeats on every Node, then quiet.
	before := snapshot(counters)
	parallel(n, 32, func(i int) {
		setReady(b, admin, names[i], corev1.ConditionTrue)
	})
	time.Sleep(*benchSteadyFor)
	d := snapshot(counters).minus(before)
	b.Logf("%-28s %d heartbeats + %s quiet; requests: %s", "steady state", n, *benchSteadyFor, d.total())
	if w := d.writes(); w != 0 {
		b.Errorf("steady state: %d writes, want 0", w)
	}
	b.ReportMetric(float64(d.writes()), "steady-writes")

	phase("runtime changes to CRI-O", nil, func() {
		obs.expect(func(string) string { return "crio" })
		parallel(n, 32, func(i int) {
			updateStatus(b, admin, names[i], func(s *corev1.NodeStatus) { s.NodeInfo.ContainerRuntimeVersion = "cri-o://1.34.0" })
		})
	}, n)
	phase("label removed by someone", nil, func() {
		parallel(n, 32, func(i int) {
			_, err := admin.CoreV1().Nodes().Patch(context.Background(), names[i], types.MergePatchType,
				[]byte(`{"metadata":{"labels":{"`+runtimeKey+`":null}}}`), metav1.PatchOptions{})
			if err != nil {
				b.Error(err)
			}
		})
	}, n)

	all := snapshot(counters)
	b.Logf("per labeler over the whole run: LIST %d-%d, WATCH %d-%d, PATCH %d-%d, GET %d",
		all.min("LIST nodes"), all.max("LIST nodes"), all.min("WATCH nodes"), all.max("WATCH nodes"),
		all.min("PATCH nodes"), all.max("PATCH nodes"), all.sum("GET nodes"))
	b.ReportMetric(float64(all.sum("PATCH nodes")-all.refused("PATCH nodes"))/float64(n), "patches/node")
}

// parallel runs f(0..n-1) on workers goroutines.
func parallel(n, workers int, f func(int)) {
	var wg sync.WaitGroup
	ch := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				f(i)
			}
		}()
	}
	for i := range n {
		ch <- i
	}
	close(ch)
	wg.Wait()
}

// counts is a snapshot of every labeler's request counts.
type counts []map[string]int

func snapshot(cs []*requestCounter) counts {
	out := make(counts, len(cs))
	for i, c := range cs {
		c.mu.Lock()
		out[i] = map[string]int{}
		for k, v := range c.counts {
			out[i][k] = v
		}
		c.mu.Unlock()
	}
	return out
}

func (c counts) minus(o counts) counts {
	out := make(counts, len(c))
	for i := range c {
		out[i] = map[string]int{}
		for k, v := range c[i] {
			if d := v - o[i][k]; d != 0 {
				out[i][k] = d
			}
		}
	}
	return out
}

func (c counts) sum(k string) int {
	s := 0
	for _, m := range c {
		s += m[k]
	}
	return s
}

func (c counts) min(k string) int {
	v := -1
	for _, m := range c {
		if v < 0 || m[k] < v {
			v = m[k]
		}
	}
	return v
}

func (c counts) max(k string) int {
	v := 0
	for _, m := range c {
		v = max(v, m[k])
	}
	return v
}

// refused counts the requests for key that failed or were refused.
func (c counts) refused(key string) int {
	s := 0
	for _, m := range c {
		for k, v := range m {
			if strings.HasSuffix(k, " "+key) && (strings.HasPrefix(k, "ERR ") || strings.HasPrefix(k, "HTTP")) {
				s += v
			}
		}
	}
	return s
}

func (c counts) writes() int {
	s := 0
	for _, m := range c {
		for k, v := range m {
			switch strings.Fields(k)[0] {
			case "POST", "PUT", "PATCH", "DELETE":
				s += v
			}
		}
	}
	return s
}

func (c counts) total() string {
	tot := map[string]int{}
	for _, m := range c {
		for k, v := range m {
			tot[k] += v
		}
	}
	keys := make([]string, 0, len(tot))
	for k := range tot {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, tot[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// observer follows every Node with the admin's informer (its requests are
// not counted) and tells when all carry the expected runtime label.
type observer struct {
	mu     sync.Mutex
	want   func(string) string
	names  map[string]bool
	labels map[string]string
	change chan struct{}
}

func newObserver(tb testing.TB, cs kubernetes.Interface, want map[string]string) *observer {
	o := &observer{want: func(n string) string { return want[n] }, names: map[string]bool{}, labels: map[string]string{}, change: make(chan struct{}, 1)}
	for n := range want {
		o.names[n] = true
	}
	f := informers.NewSharedInformerFactory(cs, 0)
	inf := f.Core().V1().Nodes().Informer()
	upd := func(obj any) {
		n, ok := obj.(*corev1.Node)
		if !ok || !o.names[n.Name] {
			return
		}
		o.mu.Lock()
		o.labels[n.Name] = n.Labels[runtimeKey]
		o.mu.Unlock()
		select {
		case o.change <- struct{}{}:
		default:
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: upd, UpdateFunc: func(_, n any) { upd(n) }})
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return o
}

func (o *observer) expect(want func(string) string) {
	o.mu.Lock()
	o.want = want
	o.mu.Unlock()
}

func (o *observer) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := 0
	for n := range o.names {
		if o.labels[n] != o.want(n) {
			p++
		}
	}
	return p
}

func (o *observer) wait(timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		p := o.pending()
		if p == 0 {
			return nil
		}
		select {
		case <-o.change:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			return fmt.Errorf("%d nodes not labelled after %s", p, timeout)
		}
	}
}

// BenchmarkIdleLabelerRSS measures the resident memory of the real
// labeler binary (internal/benchlabeler) watching its Node, idle:
//
//	go test ./nodelabel -run '^$' -bench IdleLabelerRSS -benchtime 1x
func BenchmarkIdleLabelerRSS(b *testing.B) {
	cp := testbed.StartControlPlane(b)
	admin := cp.AdminClient(b)
	sa := bindServiceAccount(b, cp, admin, "bench-rss", nodelabel.LabelerRules())
	createNode(b, admin, "rss-1", "containerd://2.2.9", nil)

	dir := b.TempDir()
	bin := filepath.Join(dir, "benchlabeler")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "github.com/kata-deploy/kata-deploy/nodelabel/internal/benchlabeler")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	fi, _ := os.Stat(bin)
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "token"), []byte(sa.BearerToken), 0o600))
	must(os.WriteFile(filepath.Join(dir, "ca.crt"), sa.CAData, 0o600))

	for _, env := range [][]string{nil, {"GOMEMLIMIT=10MiB"}} {
		cmd := exec.Command(bin, "-server", sa.Host, "-token-file", filepath.Join(dir, "token"),
			"-ca-file", filepath.Join(dir, "ca.crt"), "-node", "rss-1")
		cmd.Env = append(os.Environ(), env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		must(cmd.Start())
		waitLabels(b, admin, "rss-1", "labelled", hasLabel(runtimeKey, "containerd"))
		time.Sleep(10 * time.Second) // idle
		rss, hwm := procMemory(b, cmd.Process.Pid)
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		b.Logf("env %v: binary %.1f MiB, idle RSS %.1f MiB, peak RSS %.1f MiB", env, float64(fi.Size())/(1<<20), rss, hwm)
		if env == nil {
			b.ReportMetric(rss, "idle-RSS-MiB")
			b.ReportMetric(hwm, "peak-RSS-MiB")
		}
		patchLabels(b, admin, "rss-1", `{"metadata":{"labels":{"`+runtimeKey+`":null}}}`)
	}
}

// procMemory returns VmRSS and VmHWM of pid in MiB, and logs the split of
// the resident set into anonymous memory (heap, stacks, runtime) and file
// pages (the binary's code and data, shared and reclaimable).
func procMemory(tb testing.TB, pid int) (rss, hwm float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		case "RssAnon:", "RssFile:":
			tb.Logf("%s %.1f MiB", f[0], kb/1024)
		}
	}
	return rss, hwm
}
