package nodelabel

import (
	"context"
	"errors"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// A real API server applies a merge patch to the latest object and does not
// answer 409 on demand, so conflict handling is tested with the fake.
func TestPatchRetriesConflicts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		conflicts int
		wantErr   bool
	}{
		{"two conflicts", 2, false},
		{"conflicts without end", 100, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"other": "x"}}})
			patches := 0
			cs.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
				patches++
				if patches <= tc.conflicts {
					return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "n1", errors.New("the object has been modified"))
				}
				return false, nil, nil
			})
			c, err := New(cs, "n1")
			assert.NilError(t, err)
			err = c.SetKataState(context.Background(), KataInstalled)
			if tc.wantErr {
				assert.Check(t, apierrors.IsConflict(err), err)
				assert.Check(t, is.ErrorContains(err, "node n1: set labels kata-containers.io/kata-runtime=true"))
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(patches, 3))
			n, err := cs.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(n.Labels, map[string]string{"other": "x", "kata-containers.io/kata-runtime": "true"}))
		})
	}
}

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
	c, err := New(fake.NewClientset(), "worker-1")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(c.eventName(ReasonInstallFailed), "worker-1.kata-deploy.katainstallfailed"))
	assert.Check(t, is.Equal(ReasonInstallFailed.eventType(), corev1.EventTypeWarning))
	assert.Check(t, is.Equal(ReasonUninstallSucceeded.eventType(), corev1.EventTypeNormal))
}
