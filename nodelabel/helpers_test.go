package nodelabel_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
)

// requestCounter is an http.RoundTripper wrapper that counts API requests by
// verb and resource ("PATCH nodes", "WATCH nodes"), so tests can assert how
// many writes a labeler sends.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func newRequestCounter() *requestCounter { return &requestCounter{counts: map[string]int{}} }

func (c *requestCounter) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			k := requestKey(r)
			c.add(k)
			// A labeler must only ever list and watch its own Node.
			if (k == "LIST nodes" || k == "WATCH nodes") && !strings.HasPrefix(r.URL.Query().Get("fieldSelector"), "metadata.name=") {
				c.add("UNSELECTED " + k)
			}
			resp, err := rt.RoundTrip(r)
			// Requests the server refused (e.g. 429 from API priority and
			// fairness, which client-go retries) are counted apart too.
			switch {
			case err != nil:
				c.add("ERR " + k)
			case resp.StatusCode >= 300:
				c.add(fmt.Sprintf("HTTP%d %s", resp.StatusCode, k))
			}
			return resp, err
		})
	}
	return cfg
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (c *requestCounter) add(k string) {
	c.mu.Lock()
	c.counts[k]++
	c.mu.Unlock()
}

// get returns the count for key.
func (c *requestCounter) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[key]
}

// writes counts the requests that change something.
func (c *requestCounter) writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.counts {
		switch strings.Fields(k)[0] {
		case "POST", "PUT", "PATCH", "DELETE":
			n += v
		}
	}
	return n
}

func (c *requestCounter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.counts)
}

// requestKey is "VERB resource", with GETs that watch as WATCH and GETs of
// collections as LIST.
func requestKey(r *http.Request) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// /api/v1/[namespaces/NS/]RES[/NAME] or /apis/G/V/[namespaces/NS/]RES[/NAME]
	if len(parts) > 0 && parts[0] == "apis" && len(parts) > 1 {
		parts = parts[1:]
	}
	if len(parts) >= 2 {
		parts = parts[2:]
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		parts = parts[2:]
	}
	res := "?"
	if len(parts) > 0 {
		res = parts[0]
	}
	verb := r.Method
	if verb == http.MethodGet {
		switch {
		case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
			verb = "WATCH"
		case len(parts) == 1:
			verb = "LIST"
		}
	}
	return verb + " " + res
}

// createNode creates a Node the way a kubelet registers it, with a status
// reporting runtime, and returns it.
func createNode(t testing.TB, cs kubernetes.Interface, name, runtime string, labels map[string]string) *corev1.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if labels == nil {
		labels = map[string]string{}
	}
	labels["kubernetes.io/hostname"] = name
	n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := cs.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Logf("delete node %s: %v", name, err)
		}
	})
	if runtime != "" {
		// A labeler may already be writing to the new Node: update, as the
		// kubelet does, on the latest version.
		updateStatus(t, cs, name, func(s *corev1.NodeStatus) { s.NodeInfo.ContainerRuntimeVersion = runtime })
	}
	return n
}

// updateStatus changes a Node's status as the kubelet would.
func updateStatus(t testing.TB, cs kubernetes.Interface, name string, change func(*corev1.NodeStatus)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(&n.Status)
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("update node %s status: %v", name, err)
	}
}

// setReady sets the Node's Ready condition.
func setReady(t testing.TB, cs kubernetes.Interface, name string, status corev1.ConditionStatus, handlers ...string) {
	t.Helper()
	updateStatus(t, cs, name, func(s *corev1.NodeStatus) {
		s.Conditions = []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: status, Reason: "KubeletReady", Message: "test",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}}
		s.RuntimeHandlers = nil
		for _, h := range handlers {
			s.RuntimeHandlers = append(s.RuntimeHandlers, corev1.NodeRuntimeHandler{Name: h})
		}
	})
}

// waitLabels waits until the Node's labels satisfy ok, polling: this is the
// test observing the server, not the code under test.
func waitLabels(t testing.TB, cs kubernetes.Interface, name string, what string, ok func(map[string]string) bool) map[string]string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last map[string]string
	for time.Now().Before(deadline) {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			last = n.Labels
			if ok(n.Labels) {
				return n.Labels
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("node %s: %s: not reached in 15s; labels %v", name, what, last)
	return nil
}

func hasLabel(k, v string) func(map[string]string) bool {
	return func(l map[string]string) bool { got, ok := l[k]; return ok && got == v }
}

func noLabel(k string) func(map[string]string) bool {
	return func(l map[string]string) bool { _, ok := l[k]; return !ok }
}

// run starts fn in a goroutine with a context the test cancels at cleanup,
// and returns a function that cancels it and waits for fn's result.
func run(t *testing.T, fn func(context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("did not return 10s after its context was cancelled")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// settle waits long enough for a watch event to reach a labeler and for it
// to react, when the test checks that nothing happens.
func settle() { time.Sleep(500 * time.Millisecond) }

// testLogger logs to the test's log until the test ends.
func testLogger(t *testing.T) *slog.Logger {
	h := &tHandler{t: t, done: new(atomic.Bool)}
	t.Cleanup(func() { h.done.Store(true) })
	return slog.New(h)
}

type tHandler struct {
	t     *testing.T
	done  *atomic.Bool
	attrs []slog.Attr
}

// Enabled drops client-go's most verbose levels (request and response
// dumps); logr's V(n) arrives as slog level -n.
func (h *tHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelDebug }
func (h *tHandler) Handle(_ context.Context, r slog.Record) error {
	if h.done.Load() {
		return nil
	}
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range h.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	h.t.Log(b.String())
	return nil
}
func (h *tHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &tHandler{t: h.t, done: h.done, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}
func (h *tHandler) WithGroup(string) slog.Handler { return h }
