package nodelabel

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// RuntimeLabelValue returns the runtime label's value for a Node's
// status.nodeInfo.containerRuntimeVersion: "containerd" for
// "containerd://1.6.20", "crio" for "cri-o://1.34.0". A runtime kata-deploy
// does not support is an error.
func RuntimeLabelValue(containerRuntimeVersion string) (string, error) {
	r, err := runtime.ParseRuntime(containerRuntimeVersion)
	if err != nil {
		return "", err
	}
	return string(r.Kind), nil
}

// labelPatch maps label keys to their wanted value; nil removes the label.
type labelPatch map[string]*string

// diff returns the part of want that the labels do not already satisfy, or
// nil when they all do: the check that keeps a steady node free of writes.
func diff(have map[string]string, want labelPatch) labelPatch {
	var out labelPatch
	for k, v := range want {
		cur, ok := have[k]
		if (v == nil && !ok) || (v != nil && ok && cur == *v) {
			continue
		}
		if out == nil {
			out = labelPatch{}
		}
		out[k] = v
	}
	return out
}

func (p labelPatch) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		if p[k] == nil {
			parts = append(parts, k+"-")
		} else {
			parts = append(parts, k+"="+*p[k])
		}
	}
	return strings.Join(parts, ",")
}

// patchLabels writes the labels with a JSON merge patch that names only
// them, so that labels and fields owned by others are never touched and no
// resourceVersion is needed. The API server applies such a patch to the
// latest object itself; a conflict is still possible (admission, storage
// retries running out) and is retried.
func (c *Client) patchLabels(ctx context.Context, p labelPatch) (*corev1.Node, error) {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": p}})
	if err != nil {
		return nil, fmt.Errorf("node %s: encode label patch: %w", c.node, err)
	}
	var out *corev1.Node
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.api.PatchNode(ctx, c.node, types.MergePatchType, body,
			metav1.PatchOptions{FieldManager: c.component})
		if err != nil {
			return err
		}
		out = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: set labels %s: %w", c.node, p, err)
	}
	c.log.Info("labelled node", "labels", p.String())
	return out, nil
}

// apply reads the Node and patches the labels that differ from want. It
// writes nothing when the Node already has them.
func (c *Client) apply(ctx context.Context, want labelPatch) error {
	n, err := c.api.GetNode(ctx, c.node)
	if err != nil {
		return fmt.Errorf("node %s: read labels: %w", c.node, err)
	}
	d := diff(n.Labels, want)
	if d == nil {
		c.log.Debug("labels already set", "labels", want.String())
		return nil
	}
	_, err = c.patchLabels(ctx, d)
	return err
}

// SetKataState sets the kata-runtime label to state, writing only when it
// differs. Call KeepKataState afterwards to keep it through kubelet
// re-registrations.
func (c *Client) SetKataState(ctx context.Context, state KataState) error {
	if err := c.usable(); err != nil {
		return err
	}
	s := string(state)
	return c.apply(ctx, labelPatch{c.KataLabel(): &s})
}

// RemoveLabels removes both kata-deploy labels from the Node (the cleanup's
// last step), writing only when one is present. A runtime labeler still
// running on the node puts its label back, as it should.
func (c *Client) RemoveLabels(ctx context.Context) error {
	if err := c.usable(); err != nil {
		return err
	}
	return c.apply(ctx, labelPatch{c.KataLabel(): nil, c.RuntimeLabel(): nil})
}
