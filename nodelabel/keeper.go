package nodelabel

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// nodeWatch follows the one Node through an informer restricted to it by a
// field selector, with resync off: one LIST, then one long-running WATCH
// that the reflector re-opens when it times out. Every change wakes the
// owner through a one-slot channel, so bursts of events coalesce into one
// look at the latest object.
type nodeWatch struct {
	store cache.Store
	kick  chan struct{}
	done  chan struct{}
}

func (c *Client) watchNode(ctx context.Context) *nodeWatch {
	sel := fields.OneTermEqualSelector("metadata.name", c.node).String()
	// The reflector streams the initial list as a watch (watch-list,
	// client-go's WatchListClient gate, on by default) unless the
	// ListerWatcher says it cannot; this one says what the API says (see
	// API), so a fake that never sends the stream's closing bookmark gets
	// the plain LIST instead of a wait without end.
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (k8sruntime.Object, error) {
			o.FieldSelector = sel
			return c.api.ListNodes(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return c.api.WatchNodes(ctx, o)
		},
	}, c.api)
	w := &nodeWatch{kick: make(chan struct{}, 1), done: make(chan struct{})}
	wake := func() {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	logger := logr.New(stoppingQuietly{LogSink: logr.FromSlogHandler(c.log.Handler()).GetSink(), ctx: ctx})
	store, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		Logger:        &logger,
		ListerWatcher: lw,
		ObjectType:    &corev1.Node{},
		// Keep only what the keepers and WaitReady read: a real Node's
		// image list and managed fields are most of its size, and a
		// labeler holds its Node for its whole life.
		Transform: func(obj any) (any, error) {
			if n, ok := obj.(*corev1.Node); ok {
				n.ManagedFields = nil
				n.Status.Images = nil
				n.Status.VolumesAttached = nil
				n.Status.VolumesInUse = nil
			}
			return obj, nil
		},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { wake() },
			UpdateFunc: func(any, any) { wake() },
			DeleteFunc: func(any) { wake() },
		},
	})
	w.store = store
	go func() {
		defer close(w.done)
		// The reflector reports list and watch failures (e.g. RBAC
		// denials) through the context's logger: make that ours.
		ctrl.RunWithContext(klog.NewContext(ctx, logger))
	}()
	return w
}

// latest returns the last Node the watch saw, nil if none (yet, or since
// it was deleted). The object is the store's: read it, do not modify it.
func (w *nodeWatch) latest(name string) *corev1.Node {
	obj, ok, err := w.store.GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	n, _ := obj.(*corev1.Node)
	return n
}

// keep runs until ctx ends, patching the Node whenever its labels differ
// from what want returns for it. want may return nil to leave the labels
// alone for now (e.g. no runtime reported yet), and a positive recheck to
// be asked again after that long even if the Node does not change.
func (c *Client) keep(ctx context.Context, what string, want func(n *corev1.Node, now time.Time) (p labelPatch, recheck time.Duration)) error {
	w := c.watchNode(ctx)
	defer func() { <-w.done }()

	// After our own write, events older than it still arrive; acting on
	// them would repeat the write. Their resourceVersion is lower than the
	// one our patch returned. resourceVersions are opaque to clients in
	// general; here they are only compared to skip a write that would
	// change nothing, and one that does not parse disables the skip.
	var written uint64
	const minDelay, maxDelay = time.Second, 30 * time.Second
	delay := minDelay
	var retry, recheck <-chan time.Time
	c.log.Info("keeping node labels", "what", what)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
		case <-retry:
		case <-recheck:
		}
		retry = nil
		n := w.latest(c.node)
		if n == nil {
			continue
		}
		if rv, err := strconv.ParseUint(n.ResourceVersion, 10, 64); err == nil && rv < written {
			continue
		}
		p, again := want(n, time.Now())
		recheck = nil
		if again > 0 {
			recheck = time.After(again)
		}
		d := diff(n.Labels, p)
		if d == nil {
			continue
		}
		// The watch's first LIST may be served from the API server's
		// cache, a moment behind a write just made (our own SetKataState
		// before the keeper starts): check with a consistent read before
		// writing what may already be there.
		if fresh, err := c.freshDiff(ctx, p); err == nil {
			if fresh == nil {
				continue
			}
			d = fresh
		}
		out, err := c.patchLabels(ctx, d)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.log.Warn("could not label node, will retry", "what", what, "in", delay, "err", err)
			retry = time.After(delay)
			delay = min(2*delay, maxDelay)
			continue
		}
		delay = minDelay
		written, _ = strconv.ParseUint(out.ResourceVersion, 10, 64)
	}
}

// freshDiff is diff against the Node as the API server's storage has it
// now: a LIST by field selector with no resourceVersion is a consistent
// read, and needs no verb beyond the watch's own.
func (c *Client) freshDiff(ctx context.Context, want labelPatch) (labelPatch, error) {
	l, err := c.api.ListNodes(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", c.node).String()})
	if err != nil {
		return want, err
	}
	if len(l.Items) == 0 {
		return want, nil
	}
	return diff(l.Items[0].Labels, want), nil
}

// RunRuntimeLabeler keeps the runtime label (kata-containers.io/
// container-runtime) equal to the runtime the Node reports in
// status.nodeInfo.containerRuntimeVersion, until ctx ends. It never acts on
// a transient: while the Node is not Ready or reports no runtime version
// (the kubelet's "containerd://Unknown" while the runtime restarts) the
// label stays as it is. A missing label is set at once; a label that
// disagrees with the runtime follows it (another runtime, or removed for
// one kata-deploy does not support) only once the Node has reported that
// runtime for the settle time (WithSettle). It returns nil when ctx ends.
func (c *Client) RunRuntimeLabeler(ctx context.Context) error {
	if err := c.usable(); err != nil {
		return err
	}
	key := c.RuntimeLabel()
	rule := runtimeLabelRule{settle: c.settle}
	var said string
	return c.keep(ctx, "runtime label", func(n *corev1.Node, now time.Time) (labelPatch, time.Duration) {
		current, has := n.Labels[key]
		r := rule.decide(current, has, readRuntime(n), now)
		if r.why != said {
			c.log.Info("runtime label", "label", key, "value", current, "decision", r.why)
			said = r.why
		}
		switch {
		case r.remove:
			return labelPatch{key: nil}, 0
		case r.set != nil:
			return labelPatch{key: r.set}, 0
		}
		return nil, r.recheck
	})
}

// KeepKataState keeps the kata-runtime label at state until ctx ends,
// setting it first if needed and restoring it when a kubelet
// re-registration (k3s, rke2) or anyone else wipes it. Stop it (cancel ctx)
// before changing the state with SetKataState. It returns nil when ctx ends.
func (c *Client) KeepKataState(ctx context.Context, state KataState) error {
	if err := c.usable(); err != nil {
		return err
	}
	s := string(state)
	key := c.KataLabel()
	return c.keep(ctx, fmt.Sprintf("%s=%s", key, s), func(*corev1.Node, time.Time) (labelPatch, time.Duration) {
		return labelPatch{key: &s}, 0
	})
}

// stoppingQuietly drops the error the reflector reports when the request
// it had in flight is cancelled because its owner stopped it ("Failed to
// watch ...: context canceled"): an ERROR line at every normal stop would
// look like a fault to whoever reads the installer's log.
type stoppingQuietly struct {
	logr.LogSink
	ctx context.Context
}

func (s stoppingQuietly) Error(err error, msg string, kv ...any) {
	if s.ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return
	}
	s.LogSink.Error(err, msg, kv...)
}

func (s stoppingQuietly) WithValues(kv ...any) logr.LogSink {
	return stoppingQuietly{LogSink: s.LogSink.WithValues(kv...), ctx: s.ctx}
}

func (s stoppingQuietly) WithName(name string) logr.LogSink {
	return stoppingQuietly{LogSink: s.LogSink.WithName(name), ctx: s.ctx}
}
