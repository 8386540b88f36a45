package nodelabel

import (
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestRuntimeLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"containerd://1.6.20~ds1":  "containerd",
		"containerd://1.7.22-k3s1": "containerd",
		"containerd://2.2.9":       "containerd",
		"cri-o://1.34.0":           "crio",
	} {
		got, err := RuntimeLabelValue(in)
		assert.Check(t, err, in)
		assert.Check(t, is.Equal(got, want), in)
	}
	for _, in := range []string{"docker://27.0.1", "", "containerd"} {
		_, err := RuntimeLabelValue(in)
		assert.Check(t, err != nil, in)
	}
}

func TestDiff(t *testing.T) {
	v := func(s string) *string { return &s }
	have := map[string]string{"a": "1", "b": "2"}
	assert.Check(t, is.Nil(diff(have, labelPatch{"a": v("1"), "c": nil})))
	assert.Check(t, is.DeepEqual(diff(have, labelPatch{"a": v("2"), "b": nil, "c": nil}), labelPatch{"a": v("2"), "b": nil}))
	assert.Check(t, is.Equal(labelPatch{"b": nil, "a": v("2")}.String(), "a=2,b-"))
}

func TestEventName(t *testing.T) {
	c, err := New(struct{ API }{}, "worker-1")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(c.eventName(ReasonInstallFailed), "worker-1.kata-deploy.katainstallfailed"))
	assert.Check(t, is.Equal(ReasonInstallFailed.eventType(), corev1.EventTypeWarning))
	assert.Check(t, is.Equal(ReasonUninstallSucceeded.eventType(), corev1.EventTypeNormal))
	assert.Check(t, is.Equal(ReasonWaitingRestart.eventType(), corev1.EventTypeNormal))
	assert.Check(t, is.Equal(ReasonCleanupFailed.eventType(), corev1.EventTypeWarning))
	// Label values must be valid, and "waiting-restart" must not be what
	// RuntimeClasses select.
	for _, s := range []KataState{KataInstalled, KataWaitingRestart, KataCleanup} {
		assert.Check(t, is.Len(validation.IsValidLabelValue(string(s)), 0), s)
	}
	assert.Check(t, KataWaitingRestart != KataInstalled)
}
