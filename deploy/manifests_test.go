package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/kata-deploy/kata-deploy/deploy"
	"github.com/kata-deploy/kata-deploy/nodelabel"
	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
)

// doc is one YAML document of a manifest file.
type doc struct {
	file string
	raw  []byte
	obj  *unstructured.Unstructured
}

// manifestFiles are every manifest a user applies, deploy/ and examples/.
func manifestFiles(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	names, err := fs.Glob(deploy.Manifests, "*.yaml")
	assert.NilError(t, err)
	for _, n := range names {
		b, err := deploy.Manifests.ReadFile(n)
		assert.NilError(t, err)
		out["deploy/"+n] = b
	}
	examples, err := filepath.Glob("../examples/*.yaml")
	assert.NilError(t, err)
	assert.Assert(t, len(examples) > 0)
	for _, p := range examples {
		b, err := os.ReadFile(p)
		assert.NilError(t, err)
		out["examples/"+filepath.Base(p)] = b
	}
	return out
}

// splitDocs splits a multi-document YAML file, skipping empty documents.
func splitDocs(t *testing.T, file string, data []byte) []doc {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []doc
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		assert.NilError(t, err, file)
		obj := &unstructured.Unstructured{}
		assert.NilError(t, yaml.Unmarshal(raw, &obj.Object), file)
		if len(obj.Object) == 0 {
			continue
		}
		out = append(out, doc{file: file, raw: raw, obj: obj})
	}
}

func allDocs(t *testing.T) []doc {
	t.Helper()
	var out []doc
	for f, b := range manifestFiles(t) {
		out = append(out, splitDocs(t, f, b)...)
	}
	return out
}

// decode decodes a document into a typed object, refusing unknown fields so
// that a misspelt field cannot pass silently.
func decode(t *testing.T, d doc, into any) {
	t.Helper()
	assert.NilError(t, yaml.UnmarshalStrict(d.raw, into), "%s: %s %s", d.file, d.obj.GetKind(), d.obj.GetName())
}

func find[T any](t *testing.T, docs []doc, kind, name string) *T {
	t.Helper()
	for _, d := range docs {
		if d.obj.GetKind() == kind && d.obj.GetName() == name {
			v := new(T)
			decode(t, d, v)
			return v
		}
	}
	t.Fatalf("no %s %s in the manifests", kind, name)
	return nil
}

// roles maps each account to the rules its binary needs: the account, its
// ClusterRole and its binding share the name.
var roles = map[string]func() []rbacv1.PolicyRule{
	"kata-labeler":   nodelabel.LabelerRules,
	"kata-installer": nodelabel.InstallerRules,
	"kata-cleanup":   nodelabel.CleanupRules,
}

// daemonSets maps each DaemonSet to the account it must run as.
var daemonSets = map[string]string{
	"kata-runtime-labeler":   "kata-labeler",
	"kata-deploy-containerd": "kata-installer",
	"kata-deploy-crio":       "kata-installer",
	"kata-cleanup":           "kata-cleanup",
}

const namespace = "kube-system"

// TestRBACMatchesNodelabel keeps deploy/kata-rbac.yaml and the rules the
// code declares from drifting apart: same rules, in the same order, bound to
// the right account, and no other RBAC object anywhere.
func TestRBACMatchesNodelabel(t *testing.T) {
	docs := allDocs(t)
	for name, rules := range roles {
		t.Run(name, func(t *testing.T) {
			cr := find[rbacv1.ClusterRole](t, docs, "ClusterRole", name)
			assert.DeepEqual(t, cr.Rules, rules())

			crb := find[rbacv1.ClusterRoleBinding](t, docs, "ClusterRoleBinding", name)
			assert.DeepEqual(t, crb.RoleRef, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name})
			assert.DeepEqual(t, crb.Subjects, []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: namespace}})

			sa := find[corev1.ServiceAccount](t, docs, "ServiceAccount", name)
			assert.Equal(t, sa.Namespace, namespace)
		})
	}
	var rbacObjects []string
	for _, d := range docs {
		switch d.obj.GetKind() {
		case "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount":
			rbacObjects = append(rbacObjects, d.obj.GetKind()+"/"+d.obj.GetName())
			if _, ok := roles[d.obj.GetName()]; !ok {
				t.Errorf("%s: %s %s grants something no binary was designed for", d.file, d.obj.GetKind(), d.obj.GetName())
			}
		}
	}
	assert.Equal(t, len(rbacObjects), 3*len(roles), "RBAC objects: %v", rbacObjects)
}

// TestDaemonSets checks what a reviewer would check by hand in every
// DaemonSet: its account, tolerations, priority, limits, a read-only root,
// no privileged container, the node name from the downward API, and host
// paths mounted where the binaries look for them (under /host).
func TestDaemonSets(t *testing.T) {
	docs := allDocs(t)
	for name, account := range daemonSets {
		t.Run(name, func(t *testing.T) {
			ds := find[appsv1.DaemonSet](t, docs, "DaemonSet", name)
			spec := ds.Spec.Template.Spec
			assert.Equal(t, ds.Namespace, namespace)
			assert.Equal(t, spec.ServiceAccountName, account)
			assert.Equal(t, spec.PriorityClassName, "system-node-critical")
			assert.Check(t, is.Contains(spec.Tolerations, corev1.Toleration{Operator: corev1.TolerationOpExists}))
			assert.Check(t, spec.HostNetwork == false && spec.HostPID == false && spec.HostIPC == false)
			assert.Equal(t, len(spec.Containers), 1)
			c := spec.Containers[0]
			assert.Assert(t, len(c.Command) > 0)
			assert.Check(t, strings.HasPrefix(c.Command[0], "/usr/local/bin/kata-"), c.Command)
			sc := c.SecurityContext
			assert.Assert(t, sc != nil)
			assert.Check(t, sc.Privileged != nil && !*sc.Privileged, "privileged must be set, to false")
			assert.Check(t, sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation)
			assert.Check(t, sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem)
			assert.Check(t, sc.Capabilities != nil && is.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"})().Success())
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, limit := c.Resources.Requests[r], c.Resources.Limits[r]
				assert.Check(t, !req.IsZero(), "request %s", r)
				assert.Check(t, !limit.IsZero(), "limit %s", r)
			}
			assert.Check(t, is.Contains(c.Env, corev1.EnvVar{Name: "KATA_NODE_NAME", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"},
			}}))

			hostPaths := map[string]string{}
			for _, v := range spec.Volumes {
				if v.HostPath != nil {
					hostPaths[v.Name] = v.HostPath.Path
				}
			}
			for _, m := range c.VolumeMounts {
				p, ok := hostPaths[m.Name]
				if !ok {
					continue
				}
				assert.Check(t, is.Equal(m.MountPath, path.Join("/host", p)), "volume %s", m.Name)
				delete(hostPaths, m.Name)
			}
			assert.Check(t, is.Len(hostPaths, 0), "host paths declared but not mounted")
		})
	}
}

// TestInstallersAgree checks the two installer DaemonSets differ only where
// they must, name their own DaemonSet for rolling-update detection, and
// register exactly the handlers deploy/runtimeclasses.yaml schedules on.
func TestInstallersAgree(t *testing.T) {
	docs := allDocs(t)
	env := func(c corev1.Container) map[string]string {
		m := map[string]string{}
		for _, e := range c.Env {
			m[e.Name] = e.Value
		}
		return m
	}
	var shims string
	for _, kind := range []string{"containerd", "crio"} {
		name := "kata-deploy-" + kind
		ds := find[appsv1.DaemonSet](t, docs, "DaemonSet", name)
		assert.DeepEqual(t, ds.Spec.Template.Spec.NodeSelector, map[string]string{"kata-containers.io/container-runtime": kind})
		e := env(ds.Spec.Template.Spec.Containers[0])
		assert.Equal(t, e["KATA_DAEMONSET"], namespace+"/"+name)
		assert.Equal(t, e["KATA_HOST_ROOT"], "/host")
		assert.Equal(t, e["KATA_PAYLOAD"], "/opt/kata-artifacts")
		if shims == "" {
			shims = e["KATA_SHIMS"]
		}
		assert.Equal(t, e["KATA_SHIMS"], shims, "both installers register the same handlers")
		assert.Check(t, ds.Spec.Template.Spec.TerminationGracePeriodSeconds != nil && *ds.Spec.Template.Spec.TerminationGracePeriodSeconds >= 120,
			"the grace period must leave time to uninstall")
	}
	handlers, err := kataruntime.Handlers(strings.Split(shims, ","))
	assert.NilError(t, err)
	var want, got []string
	for _, h := range handlers {
		want = append(want, h.Name)
	}
	for _, d := range docs {
		if d.obj.GetKind() != "RuntimeClass" {
			continue
		}
		var rc nodev1.RuntimeClass
		decode(t, d, &rc)
		got = append(got, rc.Name)
		assert.Check(t, is.Equal(rc.Handler, rc.Name))
		assert.Check(t, rc.Scheduling != nil && is.DeepEqual(rc.Scheduling.NodeSelector, map[string]string{"kata-containers.io/kata-runtime": "true"})().Success(), rc.Name)
		assert.Check(t, rc.Overhead != nil && !rc.Overhead.PodFixed.Memory().IsZero(), rc.Name)
	}
	assert.DeepEqual(t, got, want)
}

// TestExamples checks both workload styles carry what their flow needs.
func TestExamples(t *testing.T) {
	docs := allDocs(t)
	kata := find[appsv1.Deployment](t, docs, "Deployment", "nginx-kata")
	assert.Check(t, kata.Spec.Template.Spec.RuntimeClassName != nil && *kata.Spec.Template.Spec.RuntimeClassName == "kata")

	untrusted := find[appsv1.Deployment](t, docs, "Deployment", "nginx-untrusted")
	// The original design's two annotations; CRI-O's has had no effect
	// since 1.14, as the example and the README say.
	assert.DeepEqual(t, untrusted.Spec.Template.Annotations, map[string]string{
		"io.kubernetes.cri.untrusted-workload": "true",
		"io.kubernetes.cri-o.TrustedSandbox":   "false",
	})
	assert.DeepEqual(t, untrusted.Spec.Template.Spec.NodeSelector, map[string]string{"kata-containers.io/kata-runtime": "true"})
}
