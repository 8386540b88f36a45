package nodelabel

import (
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
)

func nodeReporting(ready corev1.ConditionStatus, crv string) *corev1.Node {
	n := &corev1.Node{}
	n.Status.NodeInfo.ContainerRuntimeVersion = crv
	if ready != "" {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
	}
	return n
}

// TestReadRuntime: what counts as a transient the labeler must not act on.
func TestReadRuntime(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ready      corev1.ConditionStatus
		crv        string
		definitive bool
		value      string
	}{
		{name: "containerd", ready: corev1.ConditionTrue, crv: "containerd://2.2.9", definitive: true, value: "containerd"},
		{name: "k3s containerd", ready: corev1.ConditionTrue, crv: "containerd://1.7.22-k3s1", definitive: true, value: "containerd"},
		{name: "cri-o", ready: corev1.ConditionTrue, crv: "cri-o://1.34.0", definitive: true, value: "crio"},
		{name: "unsupported runtime", ready: corev1.ConditionTrue, crv: "docker://27.3.1", definitive: true, value: ""},
		{name: "runtime restarting", ready: corev1.ConditionTrue, crv: "containerd://Unknown"},
		{name: "runtime restarting, NotReady", ready: corev1.ConditionFalse, crv: "containerd://Unknown"},
		{name: "unsupported runtime restarting", ready: corev1.ConditionTrue, crv: "docker://Unknown"},
		{name: "nothing reported yet", ready: corev1.ConditionTrue, crv: ""},
		{name: "no scheme", ready: corev1.ConditionTrue, crv: "2.2.9"},
		{name: "empty version", ready: corev1.ConditionTrue, crv: "containerd://"},
		{name: "NotReady", ready: corev1.ConditionFalse, crv: "containerd://2.2.9"},
		{name: "Ready unknown (kubelet unreachable)", ready: corev1.ConditionUnknown, crv: "containerd://2.2.9"},
		{name: "no Ready condition", crv: "containerd://2.2.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := readRuntime(nodeReporting(tc.ready, tc.crv))
			assert.Check(t, is.Equal(r.definitive, tc.definitive), r.why)
			assert.Check(t, is.Equal(r.value, tc.value), r.why)
		})
	}
}

// TestRuntimeLabelRule is the labeler's decision table, step by step: each
// step is a label state and a reading at a time, and what the rule does.
func TestRuntimeLabelRule(t *testing.T) {
	const settle = 30 * time.Second
	containerd := runtimeReading{definitive: true, value: "containerd"}
	crio := runtimeReading{definitive: true, value: "crio"}
	docker := runtimeReading{definitive: true, value: ""}
	transient := runtimeReading{}
	type step struct {
		at      time.Duration // since the start
		label   string        // the label's value; "-" for no label
		read    runtimeReading
		set     string // "" for no write; "-" for a removal
		recheck time.Duration
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{name: "first label is set at once", steps: []step{
			{label: "-", read: containerd, set: "containerd"},
		}},
		{name: "a label removed by hand comes back at once", steps: []step{
			{label: "containerd", read: containerd},
			{at: time.Second, label: "-", read: containerd, set: "containerd"},
		}},
		{name: "no label for a transient", steps: []step{
			{label: "-", read: transient},
		}},
		{name: "no label for an unsupported runtime", steps: []step{
			{label: "-", read: docker},
		}},
		{name: "a transient never changes the label", steps: []step{
			{label: "containerd", read: transient},
			{at: time.Hour, label: "containerd", read: transient},
		}},
		{name: "agreeing keeps the label", steps: []step{
			{label: "crio", read: crio},
		}},
		{name: "another runtime is followed once it lasted", steps: []step{
			{label: "containerd", read: crio, recheck: settle},
			{at: 10 * time.Second, label: "containerd", read: crio, recheck: 20 * time.Second},
			{at: settle, label: "containerd", read: crio, set: "crio"},
		}},
		{name: "an unsupported runtime removes the label once it lasted", steps: []step{
			{label: "containerd", read: docker, recheck: settle},
			{at: settle, label: "containerd", read: docker, set: "-"},
		}},
		{name: "a transient in between starts the wait again", steps: []step{
			{label: "containerd", read: crio, recheck: settle},
			{at: 20 * time.Second, label: "containerd", read: transient},
			{at: 25 * time.Second, label: "containerd", read: crio, recheck: settle},
			{at: 50 * time.Second, label: "containerd", read: crio, recheck: 5 * time.Second},
			{at: 55 * time.Second, label: "containerd", read: crio, set: "crio"},
		}},
		{name: "going back ends the pending change", steps: []step{
			{label: "containerd", read: crio, recheck: settle},
			{at: 10 * time.Second, label: "containerd", read: containerd},
			{at: 40 * time.Second, label: "containerd", read: crio, recheck: settle},
		}},
		{name: "a different pending runtime starts the wait again", steps: []step{
			{label: "containerd", read: crio, recheck: settle},
			{at: 20 * time.Second, label: "containerd", read: docker, recheck: settle},
			{at: 50 * time.Second, label: "containerd", read: docker, set: "-"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
			rule := runtimeLabelRule{settle: settle}
			for i, s := range tc.steps {
				r := rule.decide(s.label, s.label != "-", s.read, start.Add(s.at))
				var got string
				switch {
				case r.remove:
					got = "-"
				case r.set != nil:
					got = *r.set
				}
				assert.Check(t, is.Equal(got, s.set), "step %d: %s", i, r.why)
				assert.Check(t, is.Equal(r.recheck, s.recheck), "step %d: %s", i, r.why)
			}
		})
	}
}

// TestRuntimeLabelRuleNoSettle: with a zero settle time a definitive
// change is followed at once, and a transient still is not.
func TestRuntimeLabelRuleNoSettle(t *testing.T) {
	rule := runtimeLabelRule{}
	now := time.Now()
	r := rule.decide("containerd", true, runtimeReading{}, now)
	assert.Check(t, r.set == nil && !r.remove, r.why)
	r = rule.decide("containerd", true, runtimeReading{definitive: true, value: "crio"}, now)
	assert.Check(t, r.set != nil && *r.set == "crio", r.why)
}

// TestZeroClientRefusesToWork: a Client not made by New says so instead
// of panicking (issue 19, item 8).
func TestZeroClientRefusesToWork(t *testing.T) {
	ctx := t.Context()
	for _, c := range []*Client{{}, nil} {
		assert.Check(t, is.ErrorContains(c.SetKataState(ctx, KataInstalled), "use New"))
		assert.Check(t, is.ErrorContains(c.RemoveLabels(ctx), "use New"))
		assert.Check(t, is.ErrorContains(c.RecordEvent(ctx, ReasonInstallStarted, "x"), "use New"))
		assert.Check(t, is.ErrorContains(c.WaitReady(ctx), "use New"))
		assert.Check(t, is.ErrorContains(c.RunRuntimeLabeler(ctx), "use New"))
		assert.Check(t, is.ErrorContains(c.KeepKataState(ctx, KataInstalled), "use New"))
		_, err := c.ReportedRuntime(ctx)
		assert.Check(t, is.ErrorContains(err, "use New"))
		_, err = c.DaemonSetTargetsNode(ctx, "ns", "ds")
		assert.Check(t, is.ErrorContains(err, "use New"))
		_, _, err = c.ReleaseRuntimeLabel(ctx, "ns", "ds")
		assert.Check(t, is.ErrorContains(err, "use New"))
	}
}
