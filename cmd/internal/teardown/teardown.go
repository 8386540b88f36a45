package teardown

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// pollInterval is how often the API server is asked again. Uninstalls take
// tens of seconds to minutes; a watch would not make them shorter.
const pollInterval = 2 * time.Second

// RemoveDaemonSets deletes the named DaemonSets in namespace with
// foreground propagation, so that each stays visible until its pods are
// gone, and waits for that. A DaemonSet already gone is not an error, so a
// retried uninstall picks up where the last one stopped.
func RemoveDaemonSets(ctx context.Context, cs kubernetes.Interface, namespace string, names []string, log *slog.Logger) error {
	fg := metav1.DeletePropagationForeground
	for _, n := range names {
		err := cs.AppsV1().DaemonSets(namespace).Delete(ctx, n, metav1.DeleteOptions{PropagationPolicy: &fg})
		switch {
		case apierrors.IsNotFound(err):
			log.Info("DaemonSet already gone", "daemonset", namespace+"/"+n)
		case err != nil:
			return fmt.Errorf("delete DaemonSet %s/%s: %w", namespace, n, err)
		default:
			log.Info("deleted DaemonSet; its pods uninstall Kata", "daemonset", namespace+"/"+n)
		}
	}
	return poll(ctx, "DaemonSets still terminating", func(ctx context.Context) ([]string, error) {
		var left []string
		for _, n := range names {
			_, err := cs.AppsV1().DaemonSets(namespace).Get(ctx, n, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				return nil, fmt.Errorf("get DaemonSet %s/%s: %w", namespace, n, err)
			default:
				left = append(left, namespace+"/"+n)
			}
		}
		return left, nil
	}, log)
}

// AwaitNodesClean waits until no Node matches selector (the installers'
// kata-runtime=cleanup label, which the cleanup removes when it is done).
func AwaitNodesClean(ctx context.Context, cs kubernetes.Interface, selector string, log *slog.Logger) error {
	return poll(ctx, "nodes still labelled "+selector, func(ctx context.Context) ([]string, error) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, fmt.Errorf("list nodes %s: %w", selector, err)
		}
		var left []string
		for _, n := range nodes.Items {
			left = append(left, n.Name)
		}
		return left, nil
	}, log)
}

// poll calls pending until it returns nothing left, logging what is left
// whenever that changes. When ctx ends first, the error names what is left.
func poll(ctx context.Context, what string, pending func(context.Context) ([]string, error), log *slog.Logger) error {
	var last []string
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		left, err := pending(ctx)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		slices.Sort(left)
		if !slices.Equal(left, last) {
			log.Info("waiting", "for", what, "left", strings.Join(left, ","))
			last = left
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s: %w", what, strings.Join(left, ", "), ctx.Err())
		case <-t.C:
		}
	}
}
