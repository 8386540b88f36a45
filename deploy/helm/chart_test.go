package helm_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/golden"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/kata-deploy/kata-deploy/deploy"
	"github.com/kata-deploy/kata-deploy/deploy/helm"
	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
)

// objects splits multi-document YAML into objects, skipping empty ones.
func objects(t *testing.T, data string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(data)))
	var out []*unstructured.Unstructured
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		assert.NilError(t, err)
		u := &unstructured.Unstructured{}
		assert.NilError(t, yaml.Unmarshal(raw, &u.Object))
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

func key(u *unstructured.Unstructured) string {
	return u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
}

// rendered is one render, every object (hooks included) by key.
type rendered struct {
	objs  map[string]*unstructured.Unstructured
	hooks []*unstructured.Unstructured
}

func render(t *testing.T, values map[string]any) rendered {
	t.Helper()
	r, err := helm.Render(context.Background(), helm.DefaultNamespace, values)
	assert.NilError(t, err)
	out := rendered{objs: map[string]*unstructured.Unstructured{}}
	for _, u := range objects(t, r.Manifest) {
		out.objs[key(u)] = u
	}
	for _, h := range r.Hooks {
		for _, u := range objects(t, h.Manifest) {
			out.objs[key(u)] = u
			out.hooks = append(out.hooks, u)
		}
	}
	return out
}

func typed[T any](t *testing.T, r rendered, k string) *T {
	t.Helper()
	u, ok := r.objs[k]
	assert.Assert(t, ok, "no %s in the render; have %v", k, keys(r))
	v := new(T)
	raw, err := yaml.Marshal(u.Object)
	assert.NilError(t, err)
	assert.NilError(t, yaml.UnmarshalStrict(raw, v), k)
	return v
}

func keys(r rendered) []string {
	var ks []string
	for k := range r.objs {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestPlainManifests keeps deploy/*.yaml the chart's default render:
// `make manifests` (go test ./deploy/helm -run TestPlainManifests -update)
// writes them.
func TestPlainManifests(t *testing.T) {
	files, err := helm.PlainManifests()
	assert.NilError(t, err)
	for name, data := range files {
		p, err := filepath.Abs(filepath.Join("..", name))
		assert.NilError(t, err)
		golden.Assert(t, string(data), p, "deploy/%s is generated from the chart: run `make manifests`", name)
	}
	on, err := filepath.Glob("../*.yaml")
	assert.NilError(t, err)
	assert.Equal(t, len(on), len(files), "every deploy/*.yaml is generated: %v", on)
}

// TestDefaultsAreThePlainManifests: what `helm install` creates with the
// default values is, object by object, what the plain manifests hold; the
// hooks are kata-cleanup.yaml plus the uninstall hook's account and Jobs.
func TestDefaultsAreThePlainManifests(t *testing.T) {
	r := render(t, nil)
	plain := map[string]*unstructured.Unstructured{}
	for _, f := range []string{"kata-rbac.yaml", "kata-deploy.yaml", "runtimeclasses.yaml", "kata-cleanup.yaml"} {
		data, err := deploy.Manifests.ReadFile(f)
		assert.NilError(t, err)
		for _, u := range objects(t, string(data)) {
			plain[key(u)] = u
		}
	}
	for k, want := range plain {
		got, ok := r.objs[k]
		if assert.Check(t, ok, "%s is in the plain manifests but not in the chart's render", k) {
			assert.Check(t, is.DeepEqual(got.Object, want.Object), k)
		}
	}
	for k := range r.objs {
		if _, ok := plain[k]; !ok {
			assert.Check(t, strings.Contains(k, "kata-deploy-uninstall"), "%s is rendered but in no plain manifest", k)
		}
	}
}

// TestShimCatalogue keeps the chart's shim list (its order is KATA_SHIMS's
// and the RuntimeClasses') equal to the runtime package's catalogue.
func TestShimCatalogue(t *testing.T) {
	tpls, err := helm.Templates(helm.DefaultNamespace, nil)
	assert.NilError(t, err)
	_ = tpls
	helpers, err := os.ReadFile("kata-deploy/templates/_helpers.tpl")
	assert.NilError(t, err)
	var want []string
	for _, s := range kataruntime.Shims() {
		want = append(want, s.Name)
	}
	assert.Check(t, strings.Contains(string(helpers), "\n"+strings.Join(want, " ")+"\n"), "kata-deploy.shimCatalogue must list %v", want)
}

func env(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

const (
	containerd = "DaemonSet/kube-system/kata-deploy-containerd"
	crio       = "DaemonSet/kube-system/kata-deploy-crio"
	labeler    = "DaemonSet/kube-system/kata-runtime-labeler"
	cleanup    = "DaemonSet/kube-system/kata-cleanup"
)

func installerEnv(t *testing.T, r rendered, k string) map[string]string {
	t.Helper()
	ds := typed[appsv1.DaemonSet](t, r, k)
	return env(ds.Spec.Template.Spec.Containers[0])
}

func runtimeClasses(r rendered) []string {
	var out []string
	for _, k := range keys(r) {
		if strings.HasPrefix(k, "RuntimeClass/") {
			out = append(out, strings.TrimPrefix(k, "RuntimeClass//"))
		}
	}
	return out
}

// TestValues checks that each value documented in values.yaml changes what
// it says it changes.
func TestValues(t *testing.T) {
	def := render(t, nil)
	defEnv := installerEnv(t, def, containerd)

	t.Run("image", func(t *testing.T) {
		r := render(t, map[string]any{"image": map[string]any{"reference": "registry.example/kata", "tag": "v1"}, "imagePullPolicy": "Always"})
		for _, k := range []string{containerd, crio, labeler, cleanup} {
			c := typed[appsv1.DaemonSet](t, r, k).Spec.Template.Spec.Containers[0]
			assert.Check(t, is.Equal(c.Image, "registry.example/kata:v1"), k)
			assert.Check(t, is.Equal(c.ImagePullPolicy, corev1.PullAlways), k)
		}
		d := "sha256:" + strings.Repeat("ab", 32)
		r = render(t, map[string]any{"image": map[string]any{"digest": d}})
		c := typed[appsv1.DaemonSet](t, r, crio).Spec.Template.Spec.Containers[0]
		assert.Equal(t, c.Image, "quay.io/kata-containers/kata-deploy-go@"+d)
	})
	t.Run("imagePullSecrets", func(t *testing.T) {
		r := render(t, map[string]any{"imagePullSecrets": []any{map[string]any{"name": "regcred"}}})
		for _, k := range []string{containerd, crio, labeler, cleanup} {
			assert.Check(t, is.DeepEqual(typed[appsv1.DaemonSet](t, r, k).Spec.Template.Spec.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "regcred"}}), k)
		}
	})
	t.Run("runtimes", func(t *testing.T) {
		r := render(t, map[string]any{"runtimes": map[string]any{"crio": map[string]any{"enabled": false}}})
		_, ok := r.objs[crio]
		assert.Check(t, !ok)
		_, ok = r.objs[containerd]
		assert.Check(t, ok)
	})
	t.Run("shims", func(t *testing.T) {
		r := render(t, map[string]any{"shims": map[string]any{
			"clh": map[string]any{"enabled": false},
			"fc":  map[string]any{"enabled": true},
			"qemu": map[string]any{"allowedHypervisorAnnotations": []any{"default_vcpus", "default_memory"},
				"agent": map[string]any{"httpsProxy": "http://proxy:3128", "noProxy": "10.0.0.0/8"}},
			"dragonball": map[string]any{"agent": map[string]any{"httpsProxy": "http://proxy:3128"}},
		}})
		for _, k := range []string{containerd, crio} {
			e := installerEnv(t, r, k)
			assert.Check(t, is.Equal(e["KATA_SHIMS"], "qemu,fc,dragonball"), k)
			assert.Check(t, is.Equal(e["KATA_HYPERVISOR_ANNOTATIONS"], "qemu=default_vcpus;default_memory"), k)
			assert.Check(t, is.Equal(e["KATA_AGENT_HTTPS_PROXY"], "http://proxy:3128"), k)
			assert.Check(t, is.Equal(e["KATA_AGENT_NO_PROXY"], "10.0.0.0/8"), k)
		}
		assert.DeepEqual(t, runtimeClasses(r), []string{"kata", "kata-dragonball", "kata-fc", "kata-qemu"})
		fc := typed[nodev1.RuntimeClass](t, r, "RuntimeClass//kata-fc")
		assert.Equal(t, fc.Overhead.PodFixed.Memory().String(), "130Mi")
	})
	t.Run("shims, conflicting proxies", func(t *testing.T) {
		_, err := helm.Render(context.Background(), helm.DefaultNamespace, map[string]any{"shims": map[string]any{
			"qemu": map[string]any{"agent": map[string]any{"httpsProxy": "http://a:1"}},
			"clh":  map[string]any{"agent": map[string]any{"httpsProxy": "http://b:1"}},
		}})
		assert.ErrorContains(t, err, "agent.httpsProxy: the installer writes one proxy for every shim")
		// The error names every value at fault, so the operator knows what to change.
		assert.ErrorContains(t, err, `different ones: shims.qemu.agent.httpsProxy="http://a:1", shims.clh.agent.httpsProxy="http://b:1"; set the same value`)
		_, err = helm.Render(context.Background(), helm.DefaultNamespace, map[string]any{"shims": map[string]any{
			"qemu":       map[string]any{"agent": map[string]any{"noProxy": "10.0.0.0/8"}},
			"clh":        map[string]any{"agent": map[string]any{"noProxy": "10.0.0.0/8"}},
			"dragonball": map[string]any{"agent": map[string]any{"noProxy": ".svc"}},
		}})
		assert.ErrorContains(t, err, `different ones: shims.dragonball.agent.noProxy=".svc", shims.qemu.agent.noProxy="10.0.0.0/8", shims.clh.agent.noProxy="10.0.0.0/8"`)
	})
	t.Run("defaultShim", func(t *testing.T) {
		r := render(t, map[string]any{"defaultShim": "clh"})
		assert.Equal(t, installerEnv(t, r, crio)["KATA_DEFAULT_SHIM"], "clh")
		rc := typed[nodev1.RuntimeClass](t, r, "RuntimeClass//kata")
		assert.Equal(t, rc.Overhead.PodFixed.Memory().String(), "130Mi", "the default class costs what its shim costs")
		_, err := helm.Render(context.Background(), helm.DefaultNamespace, map[string]any{"defaultShim": "fc"})
		assert.ErrorContains(t, err, `defaultShim: "fc" is not an enabled shim (enabled: qemu, clh, dragonball)`)
	})
	t.Run("runtimeClasses", func(t *testing.T) {
		r := render(t, map[string]any{"runtimeClasses": map[string]any{"createDefault": false}})
		assert.DeepEqual(t, runtimeClasses(r), []string{"kata-clh", "kata-dragonball", "kata-qemu"})
		r = render(t, map[string]any{"runtimeClasses": map[string]any{"defaultName": "vm"}})
		vm := typed[nodev1.RuntimeClass](t, r, "RuntimeClass//vm")
		assert.Equal(t, vm.Handler, "kata")
		r = render(t, map[string]any{"runtimeClasses": map[string]any{"enabled": false}})
		assert.Check(t, is.Len(runtimeClasses(r), 0))
		assert.Equal(t, installerEnv(t, r, containerd)["KATA_SHIMS"], "qemu,clh,dragonball", "handlers are still registered")
	})
	t.Run("debug, mode, installPrefix", func(t *testing.T) {
		r := render(t, map[string]any{"debug": true, "mode": "untrusted", "installPrefix": "/usr/local/"})
		e := installerEnv(t, r, containerd)
		assert.Check(t, is.Equal(e["KATA_DEBUG"], "true"))
		assert.Check(t, is.Equal(e["KATA_MODE"], "untrusted"))
		assert.Check(t, is.Equal(e["KATA_PREFIX"], "/usr/local"))
		ds := typed[appsv1.DaemonSet](t, r, containerd)
		var mount string
		for _, m := range ds.Spec.Template.Spec.Containers[0].VolumeMounts {
			if m.Name == "host-opt" {
				mount = m.MountPath
			}
		}
		assert.Check(t, is.Equal(mount, "/host/usr/local"))
		for _, v := range ds.Spec.Template.Spec.Volumes {
			if v.Name == "host-opt" {
				assert.Check(t, is.Equal(v.HostPath.Path, "/usr/local"))
			}
		}
		for _, k := range []string{"KATA_DEBUG", "KATA_PREFIX", "KATA_SUFFIX", "KATA_LABEL_DOMAIN", "KATA_HYPERVISOR_ANNOTATIONS"} {
			_, ok := defEnv[k]
			assert.Check(t, !ok, "%s set with the defaults", k)
		}
	})
	t.Run("multiInstallSuffix", func(t *testing.T) {
		r := render(t, map[string]any{"multiInstallSuffix": "ci"})
		e := installerEnv(t, r, "DaemonSet/kube-system/kata-deploy-containerd-ci")
		assert.Check(t, is.Equal(e["KATA_SUFFIX"], "ci"))
		assert.Check(t, is.Equal(e["KATA_DAEMONSET"], "kube-system/kata-deploy-containerd-ci"))
		assert.DeepEqual(t, runtimeClasses(r), []string{"kata-ci", "kata-clh-ci", "kata-dragonball-ci", "kata-qemu-ci"})
		rc := typed[nodev1.RuntimeClass](t, r, "RuntimeClass//kata-qemu-ci")
		assert.Equal(t, rc.Handler, "kata-qemu-ci")
		sel := typed[appsv1.DaemonSet](t, r, "DaemonSet/kube-system/kata-deploy-containerd-ci").Spec.Selector.MatchLabels
		assert.Equal(t, sel["app.kubernetes.io/instance"], "ci", "its DaemonSets must not select the first install's pods")
		for k := range r.objs {
			if !strings.HasPrefix(k, "RuntimeClass/") {
				assert.Check(t, strings.HasSuffix(k, "-ci") || strings.Contains(k, "-ci-"), "%s: a second install's objects must not collide with the first's", k)
			}
		}
	})
	t.Run("labelDomain", func(t *testing.T) {
		r := render(t, map[string]any{"labelDomain": "example.com"})
		for _, k := range []string{containerd, crio, labeler, cleanup} {
			assert.Check(t, is.Equal(env(typed[appsv1.DaemonSet](t, r, k).Spec.Template.Spec.Containers[0])["KATA_LABEL_DOMAIN"], "example.com"), k)
		}
		assert.DeepEqual(t, typed[appsv1.DaemonSet](t, r, crio).Spec.Template.Spec.NodeSelector, map[string]string{"example.com/container-runtime": "crio"})
		assert.DeepEqual(t, typed[appsv1.DaemonSet](t, r, cleanup).Spec.Template.Spec.NodeSelector, map[string]string{"example.com/kata-runtime": "cleanup"})
		rc := typed[nodev1.RuntimeClass](t, r, "RuntimeClass//kata")
		assert.DeepEqual(t, rc.Scheduling.NodeSelector, map[string]string{"example.com/kata-runtime": "true"})
	})
	t.Run("scheduling", func(t *testing.T) {
		tol := map[string]any{"key": "dedicated", "operator": "Equal", "value": "kata", "effect": "NoSchedule"}
		aff := map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{
			"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{"key": "kubernetes.io/arch", "operator": "In", "values": []any{"amd64"}}}}}}}}
		r := render(t, map[string]any{"nodeSelector": map[string]any{"pool": "kata"}, "tolerations": []any{tol}, "affinity": aff, "priorityClassName": "high"})
		for _, k := range []string{containerd, crio} {
			spec := typed[appsv1.DaemonSet](t, r, k).Spec.Template.Spec
			assert.Check(t, is.Equal(spec.NodeSelector["pool"], "kata"), k)
			assert.Check(t, is.Len(spec.NodeSelector, 2), k)
			assert.Check(t, is.DeepEqual(spec.Tolerations, []corev1.Toleration{{Key: "dedicated", Operator: "Equal", Value: "kata", Effect: "NoSchedule"}}), k)
			assert.Check(t, spec.Affinity != nil && spec.Affinity.NodeAffinity != nil, k)
			assert.Check(t, is.Equal(spec.PriorityClassName, "high"), k)
		}
		// The labeler and the cleanup must still reach every node.
		for _, k := range []string{labeler, cleanup} {
			spec := typed[appsv1.DaemonSet](t, r, k).Spec.Template.Spec
			assert.Check(t, is.DeepEqual(spec.Tolerations, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}), k)
			assert.Check(t, is.Equal(spec.PriorityClassName, "high"), k)
		}
	})
	t.Run("resources, updateStrategy", func(t *testing.T) {
		r := render(t, map[string]any{
			"resources":      map[string]any{"installer": map[string]any{"limits": map[string]any{"memory": "512Mi"}}},
			"updateStrategy": map[string]any{"type": "OnDelete", "rollingUpdate": nil},
		})
		ds := typed[appsv1.DaemonSet](t, r, containerd)
		assert.Equal(t, ds.Spec.Template.Spec.Containers[0].Resources.Limits.Memory().String(), "512Mi")
		assert.Equal(t, ds.Spec.UpdateStrategy.Type, appsv1.OnDeleteDaemonSetStrategyType)
	})
	t.Run("uninstall", func(t *testing.T) {
		r := render(t, map[string]any{"uninstall": map[string]any{"timeoutSeconds": 1200}, "priorityClassName": "high"})
		u := r.objs["Job/kube-system/kata-deploy-uninstall-remove-installers"]
		assert.Assert(t, u != nil)
		v, _, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "activeDeadlineSeconds")
		assert.Equal(t, fmt.Sprint(v), "1200")
		// The hook Jobs run with the DaemonSets' priority.
		for _, step := range []string{"remove-installers", "await-cleanup"} {
			k := "Job/kube-system/kata-deploy-uninstall-" + step
			assert.Check(t, is.Equal(typed[batchv1.Job](t, r, k).Spec.Template.Spec.PriorityClassName, "high"), k)
		}
		r = render(t, map[string]any{"priorityClassName": ""})
		assert.Check(t, is.Equal(typed[batchv1.Job](t, r, "Job/kube-system/kata-deploy-uninstall-await-cleanup").Spec.Template.Spec.PriorityClassName, ""))
	})
}

// TestNotes: NOTES.txt names what the release created (the RuntimeClasses
// its values made, the image its pods run), never a class or an image that
// the values did not produce.
func TestNotes(t *testing.T) {
	notes := func(values map[string]any) string {
		t.Helper()
		files, err := helm.Templates(helm.DefaultNamespace, values)
		assert.NilError(t, err)
		n, ok := files["templates/NOTES.txt"]
		assert.Assert(t, ok, "no NOTES.txt")
		t.Log(n)
		return n
	}
	n := notes(nil)
	assert.Check(t, is.Contains(n, "image quay.io/kata-containers/kata-deploy-go:latest"))
	assert.Check(t, is.Contains(n, "RuntimeClasses created: kata, kata-qemu, kata-clh, kata-dragonball."))
	assert.Check(t, is.Contains(n, "runtimeClassName: kata (default shim qemu)."))
	assert.Check(t, is.Contains(n, "Installer DaemonSets in kube-system: kata-deploy-containerd, kata-deploy-crio."))

	d := "sha256:" + strings.Repeat("ab", 32)
	n = notes(map[string]any{"image": map[string]any{"reference": "registry.example/kata", "digest": d}})
	assert.Check(t, is.Contains(n, "image registry.example/kata@"+d))

	n = notes(map[string]any{"runtimeClasses": map[string]any{"defaultName": "vm"}, "multiInstallSuffix": "b"})
	assert.Check(t, is.Contains(n, "RuntimeClasses created: vm-b, kata-qemu-b, kata-clh-b, kata-dragonball-b."))
	assert.Check(t, is.Contains(n, "runtimeClassName: vm-b (handler kata-b, default shim qemu)."))

	n = notes(map[string]any{"runtimeClasses": map[string]any{"createDefault": false}})
	assert.Check(t, is.Contains(n, "RuntimeClasses created: kata-qemu, kata-clh, kata-dragonball."))
	assert.Check(t, is.Contains(n, "runtimeClassName: kata-qemu."))
	assert.Check(t, !strings.Contains(n, "runtimeClassName: kata "), "no class named kata was created")

	n = notes(map[string]any{"runtimeClasses": map[string]any{"enabled": false}})
	assert.Check(t, !strings.Contains(n, "runtimeClassName"))
	assert.Check(t, is.Contains(n, "register the handlers kata, kata-qemu, kata-clh, kata-dragonball"))

	n = notes(map[string]any{"mode": "untrusted", "runtimes": map[string]any{"crio": map[string]any{"enabled": false}}})
	assert.Check(t, is.Contains(n, "io.kubernetes.cri.untrusted-workload"))
	assert.Check(t, is.Contains(n, "Installer DaemonSets in kube-system: kata-deploy-containerd."))
}

// TestChecksumRollsInstallers: the installer pod template's checksum
// changes exactly when a value the installer reads does.
func TestChecksumRollsInstallers(t *testing.T) {
	sum := func(values map[string]any) string {
		r := render(t, values)
		return typed[appsv1.DaemonSet](t, r, containerd).Spec.Template.Annotations["checksum/installer-config"]
	}
	base := sum(nil)
	assert.Assert(t, base != "")
	for name, v := range map[string]map[string]any{
		"debug":       {"debug": true},
		"shims":       {"shims": map[string]any{"clh": map[string]any{"enabled": false}}},
		"annotations": {"shims": map[string]any{"qemu": map[string]any{"allowedHypervisorAnnotations": []any{"default_vcpus"}}}},
		"proxy":       {"shims": map[string]any{"qemu": map[string]any{"agent": map[string]any{"noProxy": "x"}}}},
		"defaultShim": {"defaultShim": "clh"},
		"mode":        {"mode": "untrusted"},
		"prefix":      {"installPrefix": "/usr/local"},
		"labelDomain": {"labelDomain": "example.com"},
		"suffix":      {"multiInstallSuffix": "b"},
	} {
		if name == "suffix" {
			r := render(t, v)
			assert.Check(t, typed[appsv1.DaemonSet](t, r, containerd+"-b").Spec.Template.Annotations["checksum/installer-config"] != base, name)
			continue
		}
		assert.Check(t, sum(v) != base, "%s must roll the installers", name)
	}
	for name, v := range map[string]map[string]any{
		"tolerations": {"tolerations": []any{}},
		"image":       {"image": map[string]any{"tag": "v2"}},
		"overhead":    {"shims": map[string]any{"qemu": map[string]any{"overhead": map[string]any{"memory": "1Gi"}}}},
	} {
		assert.Check(t, is.Equal(sum(v), base), "%s is not read by the installer", name)
	}
}

// TestSchemaRefusals: wrong types and unknown keys are refused before
// anything renders, naming the key.
func TestSchemaRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"unknown top-level key", map[string]any{"shimz": map[string]any{}}, "shimz"},
		{"unknown shim", map[string]any{"shims": map[string]any{"qemu-typo": map[string]any{"enabled": true}}}, "qemu-typo"},
		{"unknown shim key", map[string]any{"shims": map[string]any{"qemu": map[string]any{"enable": true}}}, "enable"},
		{"wrong type", map[string]any{"debug": "yes"}, "/debug"},
		{"enabled not bool", map[string]any{"shims": map[string]any{"qemu": map[string]any{"enabled": "true"}}}, "/shims/qemu/enabled"},
		{"mode", map[string]any{"mode": "trusted"}, "/mode"},
		{"prefix relative", map[string]any{"installPrefix": "opt"}, "/installPrefix"},
		{"suffix", map[string]any{"multiInstallSuffix": "Bad_Name"}, "/multiInstallSuffix"},
		{"digest", map[string]any{"image": map[string]any{"digest": "latest"}}, "/image/digest"},
		{"pull policy", map[string]any{"imagePullPolicy": "Sometimes"}, "/imagePullPolicy"},
		{"upstream per-arch defaultShim", map[string]any{"defaultShim": map[string]any{"amd64": "qemu"}}, "/defaultShim"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helm.Render(context.Background(), helm.DefaultNamespace, tc.values)
			assert.ErrorContains(t, err, "values don't meet the specifications of the schema")
			assert.ErrorContains(t, err, tc.want)
			t.Log(err)
		})
	}
}

// TestGolden renders a few value sets whole (objects and hooks), as
// `helm template` prints them.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
	}{
		{"defaults", nil},
		{"crio-only-debug-proxy", map[string]any{
			"runtimes": map[string]any{"containerd": map[string]any{"enabled": false}},
			"debug":    true,
			"shims": map[string]any{
				"clh":        map[string]any{"enabled": false},
				"dragonball": map[string]any{"enabled": false},
				"qemu":       map[string]any{"agent": map[string]any{"httpsProxy": "http://proxy.example:3128", "noProxy": "10.0.0.0/8,.svc"}},
			},
		}},
		{"second-install", map[string]any{
			"multiInstallSuffix": "canary",
			"installPrefix":      "/usr/local",
			"image":              map[string]any{"tag": "3.32.0"},
			"labelDomain":        "kata.example.com",
			"nodeSelector":       map[string]any{"kata-canary": "true"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := helm.Render(context.Background(), helm.DefaultNamespace, tc.values)
			assert.NilError(t, err)
			var b bytes.Buffer
			b.WriteString(r.Manifest)
			for _, h := range r.Hooks {
				fmt.Fprintf(&b, "---\n# Hook: %s, weight %d\n%s\n", h.Path, h.Weight, strings.TrimSpace(h.Manifest))
			}
			golden.Assert(t, b.String(), tc.name+".render.golden")
		})
	}
}

// TestUninstallHooks: helm uninstall runs the README's sequence: the hook
// account first, then remove-installers, then the cleanup DaemonSet, then
// await-cleanup; all are deleted once they succeeded.
func TestUninstallHooks(t *testing.T) {
	r, err := helm.Render(context.Background(), helm.DefaultNamespace, nil)
	assert.NilError(t, err)
	var order []string
	weights := map[string]int{}
	for _, h := range r.Hooks {
		assert.Check(t, is.Len(h.Events, 1), h.Path)
		assert.Check(t, is.Equal(string(h.Events[0]), "pre-delete"), h.Path)
		assert.Check(t, is.Len(h.DeletePolicies, 2), h.Path)
		k := h.Kind + "/" + h.Name
		order = append(order, k)
		weights[k] = h.Weight
	}
	assert.Assert(t, weights["ServiceAccount/kata-deploy-uninstall"] < weights["Job/kata-deploy-uninstall-remove-installers"])
	assert.Assert(t, weights["Job/kata-deploy-uninstall-remove-installers"] < weights["DaemonSet/kata-cleanup"])
	assert.Assert(t, weights["DaemonSet/kata-cleanup"] < weights["Job/kata-deploy-uninstall-await-cleanup"])
	rendered := render(t, nil)
	job := typed[appsv1.DaemonSet](t, rendered, cleanup)
	assert.Equal(t, job.Spec.Template.Spec.Containers[0].Command[0], "/usr/local/bin/kata-cleanup")
	t.Logf("hooks: %v", order)
}

// TestLint: `helm lint --strict` has nothing to say, with the defaults and
// with the golden value sets.
func TestLint(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"defaults": nil,
		"suffix":   {"multiInstallSuffix": "b", "debug": true},
	} {
		l := lint.RunAll(helm.ChartDir, values, helm.DefaultNamespace)
		for _, m := range l.Messages {
			assert.Check(t, m.Severity <= support.InfoSev, "%s: %s", name, m)
		}
	}
}
