package nodelabel

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// API is the part of the Kubernetes API the package calls. NewAPI
// implements it over a rest.Config; the clientset subpackage adapts a
// client-go clientset (or its fake) to it.
//
// It is this small, rather than kubernetes.Interface, so that a binary
// importing nodelabel does not link client-go's typed clients, whose
// scheme registers every API group at start-up: that alone doubles an idle
// labeler's resident memory (docs/nodelabel-performance.md).
//
// The watches ask WatchNodes for a watch-list when client-go's
// WatchListClient feature is on, as it is by default: opts.SendInitialEvents
// set, answered by the Node as an ADDED event and a bookmark annotated
// k8s.io/initial-events-end. An API server serves that (or refuses it, and
// the watches list instead). An implementation that would ignore it, such
// as a fake, must say so with client-go's marker method,
//
//	IsWatchListSemanticsUnSupported() bool
//
// returning true; the watches then LIST and WATCH. Without it they wait for
// a bookmark that never comes. clientset.API forwards the clientset's
// answer, so client-go's fake clientset works as it is; a type that wraps an
// API must forward the method itself, as embedding API does not.
type API interface {
	// ListNodes lists Nodes (the watches' initial list; always with a
	// field selector naming one Node).
	ListNodes(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error)
	// WatchNodes watches Nodes, with the same field selector.
	WatchNodes(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	// GetNode reads one Node.
	GetNode(ctx context.Context, name string) (*corev1.Node, error)
	// PatchNode patches one Node (its labels, with a merge patch).
	PatchNode(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions) (*corev1.Node, error)
	// CreateEvent creates a core/v1 Event in ev.Namespace.
	CreateEvent(ctx context.Context, ev *corev1.Event) (*corev1.Event, error)
	// PatchEvent patches an existing Event.
	PatchEvent(ctx context.Context, namespace, name string, pt types.PatchType, data []byte) (*corev1.Event, error)
	// GetDaemonSet reads one DaemonSet.
	GetDaemonSet(ctx context.Context, namespace, name string) (*appsv1.DaemonSet, error)
}

// restAPI implements API with two REST clients and a scheme that knows
// only the core/v1 and apps/v1 types.
type restAPI struct {
	core, apps rest.Interface
	params     k8sruntime.ParameterCodec
}

var _ API = (*restAPI)(nil)

// NewAPI returns an API that talks to the server cfg describes (from
// rest.InClusterConfig in a pod). Both API groups share one HTTP client.
func NewAPI(cfg *rest.Config) (API, error) {
	scheme := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("nodelabel: scheme: %w", err)
		}
	}
	// ListOptions, Status and WatchEvent, as client-go's own scheme has them.
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	codecs := serializer.NewCodecFactory(scheme)

	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("nodelabel: HTTP client: %w", err)
	}
	client := func(apiPath string, gv schema.GroupVersion) (rest.Interface, error) {
		c := rest.CopyConfig(cfg)
		c.APIPath = apiPath
		c.GroupVersion = &gv
		c.NegotiatedSerializer = codecs.WithoutConversion()
		if c.UserAgent == "" {
			c.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		return rest.RESTClientForConfigAndClient(c, hc)
	}
	core, err := client("/api", corev1.SchemeGroupVersion)
	if err != nil {
		return nil, fmt.Errorf("nodelabel: core client: %w", err)
	}
	apps, err := client("/apis", appsv1.SchemeGroupVersion)
	if err != nil {
		return nil, fmt.Errorf("nodelabel: apps client: %w", err)
	}
	return &restAPI{core: core, apps: apps, params: k8sruntime.NewParameterCodec(scheme)}, nil
}

func (a *restAPI) ListNodes(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error) {
	out := &corev1.NodeList{}
	err := a.core.Get().Resource("nodes").VersionedParams(&opts, a.params).Do(ctx).Into(out)
	return out, err
}

func (a *restAPI) WatchNodes(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return a.core.Get().Resource("nodes").VersionedParams(&opts, a.params).Watch(ctx)
}

func (a *restAPI) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	out := &corev1.Node{}
	err := a.core.Get().Resource("nodes").Name(name).Do(ctx).Into(out)
	return out, err
}

func (a *restAPI) PatchNode(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions) (*corev1.Node, error) {
	out := &corev1.Node{}
	err := a.core.Patch(pt).Resource("nodes").Name(name).VersionedParams(&opts, a.params).Body(data).Do(ctx).Into(out)
	return out, err
}

func (a *restAPI) CreateEvent(ctx context.Context, ev *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := a.core.Post().Namespace(ev.Namespace).Resource("events").Body(ev).Do(ctx).Into(out)
	return out, err
}

func (a *restAPI) PatchEvent(ctx context.Context, namespace, name string, pt types.PatchType, data []byte) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := a.core.Patch(pt).Namespace(namespace).Resource("events").Name(name).Body(data).Do(ctx).Into(out)
	return out, err
}

func (a *restAPI) GetDaemonSet(ctx context.Context, namespace, name string) (*appsv1.DaemonSet, error) {
	out := &appsv1.DaemonSet{}
	err := a.apps.Get().Namespace(namespace).Resource("daemonsets").Name(name).Do(ctx).Into(out)
	return out, err
}
