package nodelabel_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
	"github.com/kata-deploy/kata-deploy/nodelabel"
)

const rbacNamespace = "kata-rbac"

// role is one of the package's RBAC rule sets and every call its user
// makes.
type role struct {
	name     string
	rules    func() []rbacv1.PolicyRule
	scenario func(ctx context.Context, sa nodelabel.API, admin kubernetes.Interface, node string, log *slog.Logger) error
}

func roles() []role {
	return []role{
		{"labeler", nodelabel.LabelerRules, labelerScenario},
		{"installer", nodelabel.InstallerRules, installerScenario},
		{"cleanup", nodelabel.CleanupRules, cleanupScenario},
	}
}

// testRBAC runs every call of each role as a ServiceAccount bound to
// exactly the role's rules; then, for each verb of each rule, as one bound
// to the rules without that verb, which must fail: the rules are all that
// is needed and nothing more. Other requests are denied.
func testRBAC(t *testing.T, cp *testbed.ControlPlane, admin kubernetes.Interface) {
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "kata-deploy", Namespace: rbacNamespace},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "kata-deploy"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "kata-deploy"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/kata-deploy:1"}}},
			},
		},
	}
	cp.ServiceAccountConfig(t, rbacNamespace, "default") // creates the namespace
	_, err := admin.AppsV1().DaemonSets(rbacNamespace).Create(context.Background(), ds, metav1.CreateOptions{})
	assert.NilError(t, err)

	for _, r := range roles() {
		t.Run(r.name, func(t *testing.T) {
			t.Run("exact", func(t *testing.T) {
				t.Parallel()
				sa := bindServiceAccount(t, cp, admin, "rbac-"+r.name, r.rules())
				saCS, err := kubernetes.NewForConfig(sa)
				assert.NilError(t, err)
				node := "rbac-" + r.name
				prepareNode(t, admin, node)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				assert.NilError(t, runScenario(ctx, r, sa, admin, node))
				checkDenied(t, saCS, r.name, node)
			})
			for i, rule := range r.rules() {
				for _, verb := range rule.Verbs {
					id := fmt.Sprintf("without-%s-%s", rule.Resources[0], verb)
					t.Run(id, func(t *testing.T) {
						t.Parallel()
						rules := r.rules()
						rules[i].Verbs = without(rules[i].Verbs, verb)
						if len(rules[i].Verbs) == 0 {
							rules = append(rules[:i], rules[i+1:]...)
						}
						name := "rbac-" + r.name + "-" + id
						sa := bindServiceAccount(t, cp, admin, name, rules)
						prepareNode(t, admin, name)
						ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
						defer cancel()
						err := runScenario(ctx, r, sa, admin, name)
						if err == nil {
							t.Errorf("%s rules grant %s %s, which no call needs", r.name, verb, rule.Resources[0])
						} else {
							t.Logf("fails as it should: %v", err)
						}
					})
				}
			}
		})
	}
}

// runScenario runs the role's scenario and fails it when any request was
// denied, including those the watches retry on their own.
func runScenario(ctx context.Context, r role, sa *rest.Config, admin kubernetes.Interface, node string) error {
	rec := &forbiddenRecorder{}
	api, err := nodelabel.NewAPI(sa)
	if err != nil {
		return err
	}
	err = r.scenario(ctx, api, admin, node, slog.New(rec))
	if err != nil {
		return err
	}
	if f := rec.first(); f != "" {
		return fmt.Errorf("a request was denied: %s", f)
	}
	return nil
}

// forbiddenRecorder is a slog.Handler that keeps the first record that
// mentions a denial, e.g. the reflector's "Failed to watch ... forbidden".
type forbiddenRecorder struct {
	mu  sync.Mutex
	msg string
}

func (h *forbiddenRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *forbiddenRecorder) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	if strings.Contains(strings.ToLower(line), "forbidden") {
		h.mu.Lock()
		if h.msg == "" {
			h.msg = line
		}
		h.mu.Unlock()
	}
	return nil
}
func (h *forbiddenRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *forbiddenRecorder) WithGroup(string) slog.Handler      { return h }
func (h *forbiddenRecorder) first() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.msg
}

func without(verbs []string, v string) []string {
	var out []string
	for _, x := range verbs {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// bindServiceAccount creates a ServiceAccount bound by a ClusterRole to
// exactly rules, waits until the authorizer has the binding, and returns a
// client configuration acting as it.
func bindServiceAccount(t testing.TB, cp *testbed.ControlPlane, admin kubernetes.Interface, name string, rules []rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	ctx := context.Background()
	cfg := cp.ServiceAccountConfig(t, rbacNamespace, name)
	_, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
	assert.NilError(t, err)
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: rbacNamespace, Name: name}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	t.Cleanup(func() {
		_ = admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = admin.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	sa, err := kubernetes.NewForConfig(cfg)
	assert.NilError(t, err)
	// The authorizer learns of new bindings through its own watch: wait
	// until it allows every granted verb, so that a denial later means the
	// rules, not the propagation.
	deadline := time.Now().Add(10 * time.Second)
	for _, rule := range rules {
		for _, verb := range rule.Verbs {
			for {
				ok, err := allowed(sa, rule.APIGroups[0], rule.Resources[0], verb)
				assert.NilError(t, err)
				if ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("binding of %s never allowed %s %s", name, verb, rule.Resources[0])
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	return cfg
}

func allowed(cs kubernetes.Interface, group, resource, verb string) (bool, error) {
	ns := ""
	if resource == "events" {
		ns = nodelabel.EventNamespace
	} else if resource == "daemonsets" {
		ns = rbacNamespace
	}
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Group: group, Resource: resource, Verb: verb,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return r.Status.Allowed, nil
}

// prepareNode creates a registered Node, not Ready yet, for a scenario.
func prepareNode(t *testing.T, admin kubernetes.Interface, name string) {
	t.Helper()
	createNode(t, admin, name, "containerd://1.6.20", nil)
	setReady(t, admin, name, corev1.ConditionFalse)
}

// labelerScenario is the runtime labeler's life: it must label its node.
func labelerScenario(ctx context.Context, sa nodelabel.API, admin kubernetes.Interface, node string, log *slog.Logger) error {
	c, err := nodelabel.New(sa, node, nodelabel.WithLogger(log))
	if err != nil {
		return err
	}
	err = whileRunning(ctx, c.RunRuntimeLabeler, func() error {
		// The labeler labels a Ready node only.
		if err := markReady(ctx, admin, node); err != nil {
			return err
		}
		if err := awaitLabel(ctx, admin, node, runtimeKey, "containerd"); err != nil {
			return err
		}
		// Removed by someone: put back from the watch.
		if _, err := admin.CoreV1().Nodes().Patch(ctx, node, "application/merge-patch+json",
			[]byte(`{"metadata":{"labels":{"`+runtimeKey+`":null}}}`), metav1.PatchOptions{}); err != nil {
			return err
		}
		return awaitLabel(ctx, admin, node, runtimeKey, "containerd")
	})
	if err != nil {
		return err
	}
	// Stopped with its DaemonSet still there: the label stays.
	if removed, _, err := c.ReleaseRuntimeLabel(ctx, rbacNamespace, "kata-deploy"); err != nil || removed {
		return fmt.Errorf("released the label while the DaemonSet exists (removed %v): %w", removed, err)
	}
	// Stopped with its DaemonSet gone: the label goes.
	if removed, _, err := c.ReleaseRuntimeLabel(ctx, rbacNamespace, "no-such-daemonset"); err != nil || !removed {
		return fmt.Errorf("kept the label with the DaemonSet gone (removed %v): %w", removed, err)
	}
	return nil
}

// markReady sets the Node's Ready condition to True, as its kubelet would.
func markReady(ctx context.Context, admin kubernetes.Interface, node string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := admin.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}}
		_, err = admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// installerScenario is every call an installer makes, in its order.
func installerScenario(ctx context.Context, sa nodelabel.API, admin kubernetes.Interface, node string, log *slog.Logger) error {
	c, err := nodelabel.New(sa, node, nodelabel.WithLogger(log))
	if err != nil {
		return err
	}
	if err := c.RecordEvent(ctx, nodelabel.ReasonInstallStarted, "installing"); err != nil {
		return err
	}
	// The node turns Ready while the installer waits for it.
	go func() {
		time.Sleep(300 * time.Millisecond)
		n, err := admin.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err == nil {
			n.Status.Conditions[0].Status = corev1.ConditionTrue
			_, _ = admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		}
	}()
	if err := c.WaitReady(ctx, "kata-qemu"); err != nil {
		return err
	}
	if err := c.SetKataState(ctx, nodelabel.KataInstalled); err != nil {
		return err
	}
	if err := c.RecordEvent(ctx, nodelabel.ReasonInstallSucceeded, "installed"); err != nil {
		return err
	}
	// The same events again: the second time they are patches.
	if err := c.RecordEvent(ctx, nodelabel.ReasonInstallStarted, "installing again"); err != nil {
		return err
	}
	// The keeper restores a wiped label.
	if _, err := admin.CoreV1().Nodes().Patch(ctx, node, "application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"`+kataKey+`":null}}}`), metav1.PatchOptions{}); err != nil {
		return err
	}
	if err := whileRunning(ctx, func(ctx context.Context) error { return c.KeepKataState(ctx, nodelabel.KataInstalled) }, func() error {
		return awaitLabel(ctx, admin, node, kataKey, "true")
	}); err != nil {
		return err
	}
	if _, err := c.DaemonSetTargetsNode(ctx, rbacNamespace, "kata-deploy"); err != nil {
		return err
	}
	return c.SetKataState(ctx, nodelabel.KataCleanup)
}

// cleanupScenario is every call the cleanup makes.
func cleanupScenario(ctx context.Context, sa nodelabel.API, admin kubernetes.Interface, node string, log *slog.Logger) error {
	if _, err := admin.CoreV1().Nodes().Patch(ctx, node, "application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"`+kataKey+`":"cleanup","`+runtimeKey+`":"containerd"}}}`), metav1.PatchOptions{}); err != nil {
		return err
	}
	c, err := nodelabel.New(sa, node, nodelabel.WithLogger(log))
	if err != nil {
		return err
	}
	if err := c.RecordEvent(ctx, nodelabel.ReasonUninstallStarted, "cleaning up"); err != nil {
		return err
	}
	if err := c.RemoveLabels(ctx); err != nil {
		return err
	}
	if err := c.RecordEvent(ctx, nodelabel.ReasonUninstallSucceeded, "cleaned up"); err != nil {
		return err
	}
	return c.RecordEvent(ctx, nodelabel.ReasonUninstallSucceeded, "cleaned up again")
}

// whileRunning runs loop in the background while check runs, then stops it.
func whileRunning(ctx context.Context, loop func(context.Context) error, check func() error) error {
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- loop(lctx) }()
	err := check()
	cancel()
	if lerr := <-done; lerr != nil && err == nil {
		err = lerr
	}
	return err
}

// awaitLabel polls (as the test's observer) until the label has the value.
func awaitLabel(ctx context.Context, cs kubernetes.Interface, node, key, value string) error {
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err == nil && n.Labels[key] == value {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: label %s=%s not set: %w", node, key, value, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// checkDenied makes requests outside the role and expects them forbidden.
func checkDenied(t *testing.T, sa kubernetes.Interface, role, node string) {
	t.Helper()
	ctx := context.Background()
	denied := map[string]error{
		"delete node":     sa.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{}),
		"list pods":       second(sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{})),
		"list secrets":    second(sa.CoreV1().Secrets(rbacNamespace).List(ctx, metav1.ListOptions{})),
		"update node":     second(sa.CoreV1().Nodes().Update(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.UpdateOptions{})),
		"patch status":    second(sa.CoreV1().Nodes().Patch(ctx, node, "application/merge-patch+json", []byte(`{"status":{}}`), metav1.PatchOptions{}, "status")),
		"list daemonsets": second(sa.AppsV1().DaemonSets(rbacNamespace).List(ctx, metav1.ListOptions{})),
		"delete events":   sa.CoreV1().Events(nodelabel.EventNamespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}),
	}
	if role == "labeler" {
		denied["get node"] = second(sa.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}))
		denied["create event"] = second(sa.CoreV1().Events(nodelabel.EventNamespace).Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}))
	}
	for what, err := range denied {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %s: want forbidden, got %v", role, what, err)
		} else if !strings.Contains(err.Error(), "rbac-") {
			t.Errorf("%s: %s: forbidden for someone else: %v", role, what, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }
