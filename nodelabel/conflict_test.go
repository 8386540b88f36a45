package nodelabel_test

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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/nodelabel/clientset"
)

// Both a real clientset and the fake fit the adapter.
var (
	_ clientset.Interface = (kubernetes.Interface)(nil)
	_ clientset.Interface = (*fake.Clientset)(nil)
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
			c, err := nodelabel.New(clientset.API(cs), "n1")
			assert.NilError(t, err)
			err = c.SetKataState(context.Background(), nodelabel.KataInstalled)
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
