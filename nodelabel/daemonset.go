package nodelabel

import (
	"context"
	"fmt"
	"slices"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	schedv1 "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// Targeting says whether a DaemonSet targets the Node, and why.
type Targeting struct {
	// Targets is true when the DaemonSet controller would run a pod of
	// the DaemonSet on the Node.
	Targets bool
	// Removed is true when the DaemonSet does not exist or is being
	// deleted: a removal, not a node that momentarily does not match.
	Removed bool
	// Reason explains the answer in words fit for a log line.
	Reason string
}

// DaemonSetTargetsNode tells whether the DaemonSet namespace/name still
// targets the Node: it exists, is not being deleted, and its pod template's
// nodeName, nodeSelector, required node affinity and tolerations (with the
// tolerations the DaemonSet controller adds to every daemon pod) admit the
// Node's labels and taints. An installer being stopped asks this to tell a
// rolling update (it targets the node: keep Kata installed) from an
// uninstall or an unlabelled node (it does not: clean up).
func (c *Client) DaemonSetTargetsNode(ctx context.Context, namespace, name string) (Targeting, error) {
	if err := c.usable(); err != nil {
		return Targeting{}, err
	}
	ds, gone, err := c.daemonSet(ctx, namespace, name)
	if err != nil || gone != "" {
		return Targeting{Removed: gone != "", Reason: gone}, err
	}
	node, err := c.api.GetNode(ctx, c.node)
	if err != nil {
		return Targeting{}, fmt.Errorf("node %s: read node: %w", c.node, err)
	}
	t := targets(logr.FromSlogHandler(c.log.Handler()), ds, node)
	c.log.Info("DaemonSet targeting", "daemonset", namespace+"/"+name, "targets", t.Targets, "reason", t.Reason)
	return t, nil
}

// daemonSet reads the DaemonSet namespace/name. gone says why it is no
// more, when it does not exist or is being deleted: kata-deploy is being
// removed, not rolled.
func (c *Client) daemonSet(ctx context.Context, namespace, name string) (ds *appsv1.DaemonSet, gone string, err error) {
	ds, err = c.api.GetDaemonSet(ctx, namespace, name)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Sprintf("DaemonSet %s/%s does not exist", namespace, name), nil
	case err != nil:
		return nil, "", fmt.Errorf("node %s: read DaemonSet %s/%s: %w", c.node, namespace, name, err)
	case ds.DeletionTimestamp != nil:
		return nil, fmt.Sprintf("DaemonSet %s/%s is being deleted", namespace, name), nil
	}
	return ds, "", nil
}

// ReleaseRuntimeLabel is the runtime labeler's last step when it stops:
// when its own DaemonSet namespace/name no longer exists or is being
// deleted (kata-deploy is being removed), it removes the runtime label,
// which nothing keeps any longer, so that no kata-deploy label outlives
// kata-deploy on a node where nothing was installed. Otherwise (a rolling
// update, a pod deleted or evicted: the DaemonSet starts another labeler)
// the label stays. It reports whether it removed the label, and why not.
func (c *Client) ReleaseRuntimeLabel(ctx context.Context, namespace, name string) (removed bool, reason string, err error) {
	if err := c.usable(); err != nil {
		return false, "", err
	}
	_, gone, err := c.daemonSet(ctx, namespace, name)
	if err != nil {
		return false, "", err
	}
	if gone == "" {
		return false, fmt.Sprintf("DaemonSet %s/%s still exists: its next labeler keeps the label", namespace, name), nil
	}
	// A patch that names only the label removes it, or does nothing when
	// it is gone already; no read needed.
	if _, err := c.patchLabels(ctx, labelPatch{c.RuntimeLabel(): nil}); err != nil {
		return false, "", err
	}
	return true, gone, nil
}

// targets is the DaemonSet controller's "should run" predicate: the
// template's node name, required node affinity and node selector, and
// NoSchedule/NoExecute taints against the template's tolerations plus the
// controller's defaults.
func targets(logger logr.Logger, ds *appsv1.DaemonSet, node *corev1.Node) Targeting {
	spec := ds.Spec.Template.Spec
	id := ds.Namespace + "/" + ds.Name
	if spec.NodeName != "" && spec.NodeName != node.Name {
		return Targeting{Reason: fmt.Sprintf("DaemonSet %s is pinned to node %s", id, spec.NodeName)}
	}
	ok, err := nodeaffinity.NewRequiredNodeAffinity(spec.NodeSelector, spec.Affinity).Match(node)
	if err != nil || !ok {
		// The controller ignores parse errors and treats them as no match.
		return Targeting{Reason: fmt.Sprintf("DaemonSet %s's node selector or affinity does not match node %s", id, node.Name)}
	}
	tolerations := append(slices.Clone(spec.Tolerations), daemonTolerations(spec.HostNetwork)...)
	taint, untolerated := schedv1.FindMatchingUntoleratedTaint(logger, node.Spec.Taints, tolerations, func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}, false)
	if untolerated {
		return Targeting{Reason: fmt.Sprintf("DaemonSet %s does not tolerate taint %s on node %s", id, taint.ToString(), node.Name)}
	}
	return Targeting{Targets: true, Reason: fmt.Sprintf("DaemonSet %s targets node %s", id, node.Name)}
}

// daemonTolerations are the tolerations the DaemonSet controller adds to
// every daemon pod (pkg/controller/daemon/util.AddOrUpdateDaemonPodTolerations).
func daemonTolerations(hostNetwork bool) []corev1.Toleration {
	exists := func(key string, effect corev1.TaintEffect) corev1.Toleration {
		return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: effect}
	}
	t := []corev1.Toleration{
		exists(corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute),
		exists(corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute),
		exists(corev1.TaintNodeDiskPressure, corev1.TaintEffectNoSchedule),
		exists(corev1.TaintNodeMemoryPressure, corev1.TaintEffectNoSchedule),
		exists(corev1.TaintNodePIDPressure, corev1.TaintEffectNoSchedule),
		exists(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule),
	}
	if hostNetwork {
		t = append(t, exists(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule))
	}
	return t
}
