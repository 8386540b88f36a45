package nodelabel

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// DefaultSettle is how long a Node must keep reporting a different runtime
// before the runtime labeler follows it (see WithSettle).
const DefaultSettle = 30 * time.Second

// runtimeReading is what a Node says of its container runtime, as the
// runtime labeler reads it.
type runtimeReading struct {
	// definitive is false for a transient: a Node that is not Ready, or a
	// runtime the kubelet could not ask ("containerd://Unknown", "").
	// The labeler never acts on a transient.
	definitive bool
	// value is the label value the runtime implies: "containerd" or
	// "crio", or "" for a runtime kata-deploy does not support.
	value string
	// why says what was read, for the log.
	why string
}

// readRuntime classifies what n reports. A runtime restarting shows up as
// a NotReady node and as the kubelet's "<scheme>://Unknown" (it could not
// ask the runtime its version), for as long as the restart takes: both are
// transients, so that a slow restart never unlabels the node and so never
// makes its installer's DaemonSet let go of it.
func readRuntime(n *corev1.Node) runtimeReading {
	crv := n.Status.NodeInfo.ContainerRuntimeVersion
	if ready := readyStatus(n); ready != corev1.ConditionTrue {
		return runtimeReading{why: fmt.Sprintf("node not Ready (Ready=%q), runtime %q", ready, crv)}
	}
	scheme, version, ok := strings.Cut(crv, "://")
	if !ok || scheme == "" {
		return runtimeReading{why: fmt.Sprintf("no runtime reported yet (%q)", crv)}
	}
	if _, err := runtime.ParseVersion(version); err != nil {
		return runtimeReading{why: fmt.Sprintf("runtime %q reports no version", crv)}
	}
	v, err := RuntimeLabelValue(crv)
	if err != nil {
		return runtimeReading{definitive: true, why: fmt.Sprintf("unsupported runtime %q", crv)}
	}
	return runtimeReading{definitive: true, value: v, why: fmt.Sprintf("runtime %q", crv)}
}

// readyStatus is the Node's Ready condition ("" when it has none).
func readyStatus(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

// runtimeLabelRule decides the runtime label from successive readings. It
// holds the one thing a single reading cannot tell: since when the Node
// has reported a runtime that differs from the label.
type runtimeLabelRule struct {
	settle time.Duration
	// pending is the value the label would change to, and since when the
	// Node has said so without a break; pendingSet is false when no
	// change is pending.
	pending    string
	pendingSet bool
	since      time.Time
}

// ruling is one decision of runtimeLabelRule.
type ruling struct {
	// set is the label value to write, remove removes the label; neither
	// leaves the label as it is.
	set    *string
	remove bool
	// recheck, when positive, asks to read the Node again after it even
	// if nothing changes meanwhile: a pending change is due then.
	recheck time.Duration
	// why explains the decision for the log.
	why string
}

// decide is the runtime labeler's rule, given the label's current value
// (has false when the Node has none), what the Node reports and the time:
//
//   - a transient reading (Node not Ready, no version) changes nothing and
//     ends any pending change;
//   - a missing label is set at once to a supported runtime (there is
//     nothing to flap from, and a label removed by hand comes back);
//   - a label that agrees with the reading stays;
//   - a label that disagrees (another supported runtime, or one kata-deploy
//     does not support, which removes the label) changes only once the
//     Node has reported the same definitive runtime for the settle time.
func (r *runtimeLabelRule) decide(current string, has bool, rd runtimeReading, now time.Time) ruling {
	if !rd.definitive {
		r.pendingSet = false
		return ruling{why: "transient: " + rd.why}
	}
	if has && current == rd.value {
		r.pendingSet = false
		return ruling{why: "agrees: " + rd.why}
	}
	if !has {
		r.pendingSet = false
		if rd.value == "" {
			return ruling{why: "no label, and none wanted: " + rd.why}
		}
		return ruling{set: &rd.value, why: "no label yet: " + rd.why}
	}
	if !r.pendingSet || r.pending != rd.value {
		r.pending, r.pendingSet, r.since = rd.value, true, now
	}
	if wait := r.settle - now.Sub(r.since); wait > 0 {
		return ruling{recheck: wait, why: fmt.Sprintf("differs from %q since %s, waiting %s more before following it: %s",
			current, r.since.UTC().Format(time.RFC3339), wait.Round(time.Millisecond), rd.why)}
	}
	r.pendingSet = false
	why := fmt.Sprintf("differs from %q for %s: %s", current, r.settle, rd.why)
	if rd.value == "" {
		return ruling{remove: true, why: why}
	}
	return ruling{set: &rd.value, why: why}
}
