package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/kata-deploy/kata-deploy/deploy/helm"
	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
	"github.com/kata-deploy/kata-deploy/nodelabel"
)

// applyOrder puts what others depend on first: accounts before the
// DaemonSets that name them, as a user applies kata-rbac.yaml first.
var applyOrder = []string{
	"deploy/kata-rbac.yaml", "deploy/runtimeclasses.yaml", "deploy/kata-deploy.yaml",
	"deploy/kata-cleanup.yaml", "examples/nginx-kata.yaml", "examples/nginx-untrusted.yaml",
}

// TestApplyToAPIServer applies every manifest to a real kube-apiserver with
// server-side apply and strict field validation (an unknown or misspelt
// field is an error, not a silent drop), applies them again to show that
// re-applying changes nothing, then checks what each ServiceAccount may do.
func TestApplyToAPIServer(t *testing.T) {
	testbed.Require(t)
	cp := testbed.StartControlPlane(t)
	files := manifestFiles(t)
	assert.Equal(t, len(files), len(applyOrder), "every manifest is applied")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ap := newApplier(t, cp.AdminConfig())
	first := map[string]string{}
	for _, f := range applyOrder {
		for _, d := range splitDocs(t, f, files[f]) {
			rv, err := ap.apply(ctx, d)
			assert.NilError(t, err, "%s: %s %s", f, d.obj.GetKind(), d.obj.GetName())
			first[key(d)] = rv
		}
	}
	for _, f := range applyOrder {
		for _, d := range splitDocs(t, f, files[f]) {
			rv, err := ap.apply(ctx, d)
			assert.NilError(t, err)
			assert.Check(t, rv == first[key(d)], "%s: re-applying %s changed it", f, key(d))
		}
	}

	t.Run("access", func(t *testing.T) { testAccess(t, cp) })
	t.Run("pod-security", func(t *testing.T) { testPodSecurity(t, cp) })
}

func key(d doc) string {
	return d.obj.GetKind() + "/" + d.obj.GetNamespace() + "/" + d.obj.GetName()
}

// applier sends documents as server-side apply patches through the dynamic
// client, finding each kind's resource by discovery as kubectl does.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	assert.NilError(t, err)
	dyn, err := dynamic.NewForConfig(cfg)
	assert.NilError(t, err)
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

// apply applies d and returns the object's resourceVersion afterwards.
func (a *applier) apply(ctx context.Context, d doc) (string, error) {
	gvk := d.obj.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return "", fmt.Errorf("map %s: %w", gvk, err)
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == "namespace" {
		ns := d.obj.GetNamespace()
		if ns == "" {
			return "", fmt.Errorf("%s %s: a namespaced object must name its namespace", gvk.Kind, d.obj.GetName())
		}
		ri = a.dyn.Resource(m.Resource).Namespace(ns)
	}
	data, err := json.Marshal(d.obj.Object)
	if err != nil {
		return "", fmt.Errorf("encode: %w", err)
	}
	force := true
	out, err := ri.Patch(ctx, d.obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		FieldManager:    "kata-deploy-test",
		Force:           &force,
		FieldValidation: metav1.FieldValidationStrict,
	})
	if err != nil {
		return "", fmt.Errorf("server-side apply: %w", err)
	}
	return out.GetResourceVersion(), nil
}

// allVerbs are the verbs RBAC knows for ordinary resources.
var allVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

// scopeOf is where each resource of the rules is used: Events are recorded
// in nodelabel.EventNamespace, the installer reads its DaemonSet in
// kube-system; Nodes are cluster-scoped.
var scopeOf = map[string]string{
	"nodes":      "",
	"events":     nodelabel.EventNamespace,
	"daemonsets": namespace,
}

type access struct {
	group, resource, subresource, verb, namespace string
}

func (a access) String() string {
	r := a.resource
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	if a.group != "" {
		r = a.group + "/" + r
	}
	if a.namespace != "" {
		r += " in " + a.namespace
	}
	return a.verb + " " + r
}

// mustDeny is a sample of what no kata-deploy binary may do: read secrets,
// touch pods or their exec/proxy, delete nodes, change DaemonSets, grant
// itself more through RBAC, impersonate.
var mustDeny = []access{
	{resource: "secrets", verb: "get", namespace: namespace},
	{resource: "secrets", verb: "list", namespace: namespace},
	{resource: "configmaps", verb: "get", namespace: namespace},
	{resource: "pods", verb: "list", namespace: namespace},
	{resource: "pods", verb: "delete", namespace: namespace},
	{resource: "pods", subresource: "exec", verb: "create", namespace: namespace},
	{resource: "nodes", verb: "delete"},
	{resource: "nodes", verb: "update"},
	{resource: "nodes", subresource: "status", verb: "patch"},
	{resource: "nodes", subresource: "proxy", verb: "get"},
	{group: "apps", resource: "daemonsets", verb: "update", namespace: namespace},
	{group: "apps", resource: "daemonsets", verb: "delete", namespace: namespace},
	{group: "apps", resource: "daemonsets", verb: "list", namespace: namespace},
	{group: "rbac.authorization.k8s.io", resource: "clusterroles", verb: "escalate"},
	{group: "rbac.authorization.k8s.io", resource: "clusterrolebindings", verb: "create"},
	{resource: "serviceaccounts", verb: "impersonate", namespace: namespace},
	{resource: "serviceaccounts", subresource: "token", verb: "create", namespace: namespace},
	{group: "node.k8s.io", resource: "runtimeclasses", verb: "create"},
}

// testAccess asks the API server, as each ServiceAccount the manifests
// create (with a token of its own, not impersonation), whether it may do
// each verb on each resource its rules name: allowed exactly when the rules
// list the verb. Then a sample of other requests, which must be denied.
func testAccess(t *testing.T, cp *testbed.ControlPlane) {
	for name, rules := range roles {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := cp.ServiceAccountConfig(t, namespace, name)
			cfg.QPS, cfg.Burst = 200, 200 // dozens of reviews; the default 5/s would take seconds
			cs, err := kubernetes.NewForConfig(cfg)
			assert.NilError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			granted := map[access]bool{}
			var checks []access
			for _, r := range rules() {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						for _, v := range allVerbs {
							a := access{group: g, resource: res, verb: v, namespace: scopeOf[res]}
							checks = append(checks, a)
							granted[a] = slices.Contains(r.Verbs, v)
						}
					}
				}
			}
			for _, a := range mustDeny {
				if _, ok := granted[a]; !ok {
					checks = append(checks, a)
				}
			}
			var allowed []string
			for _, a := range checks {
				ok, err := selfCheck(ctx, cs, a)
				assert.NilError(t, err)
				if ok {
					allowed = append(allowed, a.String())
				}
				assert.Check(t, ok == granted[a], "%s may %s: got %v, want %v", name, a, ok, granted[a])
			}
			t.Logf("%s may: %v", name, allowed)
		})
	}
}

func selfCheck(ctx context.Context, cs kubernetes.Interface, a access) (bool, error) {
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: a.namespace, Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("access review %s: %w", a, err)
	}
	return r.Status.Allowed, nil
}

// testPodSecurity creates, as a dry run, the labeler's pod in a namespace
// that enforces the "restricted" Pod Security Standard: it must pass. The
// installer's pod (host paths, uid 0) must be refused there, so that the
// check is known to bite.
func testPodSecurity(t *testing.T, cp *testbed.ControlPlane) {
	const ns = "kata-psa-restricted"
	admin := cp.AdminClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}}, metav1.CreateOptions{})
	assert.NilError(t, err)
	docs := allDocs(t)
	podOf := func(dsName string) *corev1.Pod {
		ds := find[appsv1.DaemonSet](t, docs, "DaemonSet", dsName)
		// The ServiceAccount admission plugin wants the account to exist.
		cp.ServiceAccountConfig(t, ns, ds.Spec.Template.Spec.ServiceAccountName)
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: dsName, Namespace: ns, Labels: ds.Spec.Template.Labels},
			Spec:       ds.Spec.Template.Spec,
		}
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}

	_, err = admin.CoreV1().Pods(ns).Create(ctx, podOf("kata-runtime-labeler"), dryRun)
	assert.NilError(t, err, "the labeler must meet the restricted Pod Security Standard")

	_, err = admin.CoreV1().Pods(ns).Create(ctx, podOf("kata-deploy-containerd"), dryRun)
	assert.ErrorContains(t, err, "violates PodSecurity")
	t.Logf("installer, as expected: %v", err)
}

// chartValueSets are the chart renders applied to the API server: the
// defaults (the plain manifests' objects) and the value sets of
// deploy/helm's golden renders, hooks included.
var chartValueSets = map[string]map[string]any{
	"defaults": nil,
	"crio-only-debug-proxy": {
		"runtimes": map[string]any{"containerd": map[string]any{"enabled": false}},
		"debug":    true,
		"shims": map[string]any{
			"clh":        map[string]any{"enabled": false},
			"dragonball": map[string]any{"enabled": false},
			"qemu":       map[string]any{"agent": map[string]any{"httpsProxy": "http://proxy.example:3128", "noProxy": "10.0.0.0/8,.svc"}},
		},
	},
	"second-install": {
		"multiInstallSuffix": "canary",
		"installPrefix":      "/usr/local",
		"image":              map[string]any{"tag": "3.32.0"},
		"labelDomain":        "kata.example.com",
		"nodeSelector":       map[string]any{"kata-canary": "true"},
		"tolerations":        []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "kata", "effect": "NoSchedule"}},
	},
}

// TestApplyChartRenders applies every object of each chart render, hooks
// included, to a real kube-apiserver with server-side apply and strict
// field validation, as TestApplyToAPIServer does for the plain manifests.
func TestApplyChartRenders(t *testing.T) {
	testbed.Require(t)
	cp := testbed.StartControlPlane(t)
	ap := newApplier(t, cp.AdminConfig())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, values := range chartValueSets {
		t.Run(name, func(t *testing.T) {
			r, err := helm.Render(ctx, helm.DefaultNamespace, values)
			assert.NilError(t, err)
			docs := splitDocs(t, "chart:"+name, []byte(r.Manifest))
			for _, h := range r.Hooks {
				docs = append(docs, splitDocs(t, "chart:"+name+":"+h.Path, []byte(h.Manifest))...)
			}
			assert.Assert(t, len(docs) > 0)
			for _, d := range docs {
				_, err := ap.apply(ctx, d)
				assert.Check(t, err == nil, "%s: %s: %v", d.file, key(d), err)
			}
		})
	}
}
