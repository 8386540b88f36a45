// Package clientset adapts a client-go clientset to nodelabel.API, for
// programs that already hold one (and for tests with client-go's fake).
// Programs that do not should use nodelabel.NewAPI, which links far less.
package clientset

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	appsv1client "k8s.io/client-go/kubernetes/typed/apps/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/watchlist"

	"github.com/kata-deploy/kata-deploy/nodelabel"
)

// Interface is the part of a clientset the adapter uses;
// kubernetes.Interface and *fake.Clientset satisfy it.
type Interface interface {
	CoreV1() corev1client.CoreV1Interface
	AppsV1() appsv1client.AppsV1Interface
}

// API adapts cs to nodelabel.API.
func API(cs Interface) nodelabel.API { return adapter{cs} }

type adapter struct{ cs Interface }

var _ nodelabel.API = adapter{}

// IsWatchListSemanticsUnSupported says what the clientset says: true for
// client-go's fake, which cannot stream a watch-list, so that nodelabel's
// watches list instead; false for a clientset that talks to an API server.
func (a adapter) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(a.cs)
}

func (a adapter) ListNodes(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error) {
	return a.cs.CoreV1().Nodes().List(ctx, opts)
}

func (a adapter) WatchNodes(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return a.cs.CoreV1().Nodes().Watch(ctx, opts)
}

func (a adapter) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	return a.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
}

func (a adapter) PatchNode(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions) (*corev1.Node, error) {
	return a.cs.CoreV1().Nodes().Patch(ctx, name, pt, data, opts)
}

func (a adapter) CreateEvent(ctx context.Context, ev *corev1.Event) (*corev1.Event, error) {
	return a.cs.CoreV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
}

func (a adapter) PatchEvent(ctx context.Context, namespace, name string, pt types.PatchType, data []byte) (*corev1.Event, error) {
	return a.cs.CoreV1().Events(namespace).Patch(ctx, name, pt, data, metav1.PatchOptions{})
}

func (a adapter) GetDaemonSet(ctx context.Context, namespace, name string) (*appsv1.DaemonSet, error) {
	return a.cs.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
}
