package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"testing"
	"testing/fstest"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/golden"
)

func TestParseRuntime(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Runtime
		err  string
	}{
		{in: "containerd://1.6.20", want: Runtime{Containerd, Version{1, 6, 20, ""}}},
		{in: "containerd://2.2.9", want: Runtime{Containerd, Version{2, 2, 9, ""}}},
		{in: "containerd://1.7.22-k3s1", want: Runtime{Containerd, Version{1, 7, 22, "k3s1"}}},
		{in: "containerd://1.6.20~ds1", want: Runtime{Containerd, Version{1, 6, 20, "ds1"}}},
		{in: "containerd://v2.1.4", want: Runtime{Containerd, Version{2, 1, 4, ""}}},
		{in: "cri-o://1.34.0", want: Runtime{CRIO, Version{1, 34, 0, ""}}},
		{in: "docker://28.2.2", err: `unsupported runtime "docker"`},
		{in: "containerd", err: "want <runtime>://<version>"},
		{in: "containerd://one.two", err: `"one" is not a number`},
		{in: "cri-o://1", err: "want major.minor"},
	} {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseRuntime(c.in)
			if c.err != "" {
				assert.ErrorContains(t, err, c.err)
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(got, c.want))
		})
	}
}

func TestVersionCompare(t *testing.T) {
	v := func(s string) Version {
		x, err := ParseVersion(s)
		assert.NilError(t, err)
		return x
	}
	assert.Check(t, v("1.6.20").Compare(v("1.7.0")) < 0)
	assert.Check(t, v("2.1.0").AtLeast(2, 1))
	assert.Check(t, !v("2.0.9").AtLeast(2, 1))
	assert.Check(t, v("1.7.22-k3s1").Compare(v("1.7.22")) == 0)
	assert.Check(t, is.Equal(Runtime{CRIO, v("1.34.0")}.String(), "cri-o://1.34.0"))
}

func unit(name string) string { return "etc/systemd/system/" + name }

func TestDetectVariant(t *testing.T) {
	for _, c := range []struct {
		name   string
		files  []string
		masked []string
		kind   Kind
		want   Variant
		err    string
	}{
		{name: "plain containerd", files: []string{"lib/systemd/system/containerd.service"}, want: VariantContainerd},
		{name: "crio", files: []string{"usr/lib/systemd/system/crio.service", "etc/crio/crio.conf"}, want: VariantCRIO},
		{name: "k3s server with docker's containerd", files: []string{unit("k3s.service"), "lib/systemd/system/containerd.service"}, want: VariantK3s},
		{name: "k3s agent", files: []string{unit("k3s-agent.service")}, want: VariantK3sAgent},
		{name: "rke2 server", files: []string{"usr/local/lib/systemd/system/rke2-server.service"}, want: VariantRKE2Server},
		{name: "rke2 agent", files: []string{"usr/local/lib/systemd/system/rke2-agent.service"}, want: VariantRKE2Agent},
		{name: "k0s", files: []string{"etc/k0s/containerd.d/.keep"}, want: VariantK0s},
		{name: "microk8s", files: []string{"var/snap/microk8s/current/args/containerd-template.toml"}, want: VariantMicroK8s},
		{name: "node reports crio, containerd also installed", kind: CRIO,
			files: []string{"lib/systemd/system/containerd.service", "etc/crio/crio.conf"}, want: VariantCRIO},
		{name: "containerd and crio, no hint", files: []string{"lib/systemd/system/containerd.service", "etc/crio/crio.conf"},
			err: "more than one container runtime found on the host; set the runtime explicitly: containerd (/lib/systemd/system/containerd.service); crio (/etc/crio/crio.conf)"},
		{name: "k3s and rke2", files: []string{unit("k3s.service"), unit("rke2-agent.service")}, err: "k3s (/etc/systemd/system/k3s.service); rke2-agent"},
		{name: "nothing", err: "no container runtime found on the host"},
		{name: "masked containerd beside crio", masked: []string{"etc/systemd/system/containerd.service"},
			files: []string{"lib/systemd/system/crio.service"}, want: VariantCRIO},
		{name: "crio expected, containerd found", kind: CRIO, files: []string{"lib/systemd/system/containerd.service"}, err: "no crio found on the host"},
	} {
		t.Run(c.name, func(t *testing.T) {
			host := fstest.MapFS{}
			for _, f := range c.files {
				host[f] = &fstest.MapFile{}
			}
			for _, f := range c.masked {
				host[f] = &fstest.MapFile{Mode: fs.ModeCharDevice | fs.ModeDevice}
			}
			got, _, err := DetectVariant(host, c.kind)
			if c.err != "" {
				assert.ErrorContains(t, err, c.err)
				var amb *AmbiguousError
				var none *NoRuntimeError
				assert.Check(t, errors.As(err, &amb) || errors.As(err, &none))
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(got, c.want))
		})
	}
}

func TestVariantNamesRoundTrip(t *testing.T) {
	for _, v := range Variants() {
		got, err := ParseVariant(string(v))
		assert.NilError(t, err)
		assert.Check(t, is.Equal(got, v))
		if v != VariantK0s {
			assert.Check(t, strings.HasSuffix(v.RuntimeUnit(), ".service"), v)
		}
	}
	_, err := ParseVariant("docker")
	assert.ErrorContains(t, err, "want one of k3s, k3s-agent")
}

// TestHandlersGolden pins the handler set for the shim catalogue, so that a
// change of path, type or name shows up in review.
func TestHandlersGolden(t *testing.T) {
	var names []string
	for _, s := range Shims() {
		names = append(names, s.Name)
	}
	hs, err := Handlers(names, WithDefaultShim("qemu"), WithSnapshotter("fc", "devmapper"))
	assert.NilError(t, err)
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "%s\n  shim=%s type=%s\n  path=%s\n  config=%s\n  annotations=%v privileged_without_host_devices=%t snapshotter=%q\n",
			h.Name, h.Shim, h.RuntimeType, h.ShimPath, h.ConfigPath, h.PodAnnotations, h.PrivilegedWithoutHostDevices, h.Snapshotter)
	}
	golden.Assert(t, b.String(), "all.handlers.golden")

	hs, err = Handlers([]string{"clh"}, WithPrefix("/usr/local"), WithSuffix("canary"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(hs[0].Name, "kata-canary"))
	assert.Check(t, is.Equal(hs[1].Name, "kata-clh-canary"))
	assert.Check(t, is.Equal(hs[1].ShimPath, "/usr/local/kata-canary/bin/containerd-shim-kata-v2"))
}

func TestHandlersRefuse(t *testing.T) {
	for _, c := range []struct {
		shims []string
		opts  []HandlerOption
		err   string
	}{
		{err: "no Kata shims selected"},
		{shims: []string{"qemu", "vbox"}, err: `unknown Kata shim "vbox"`},
		{shims: []string{"qemu", "qemu"}, err: "selected twice"},
		{shims: []string{"qemu"}, opts: []HandlerOption{WithDefaultShim("clh")}, err: `default Kata shim "clh" is not among`},
		{shims: []string{"qemu"}, opts: []HandlerOption{WithSuffix("Bad_Suffix")}, err: "install suffix"},
	} {
		_, err := Handlers(c.shims, c.opts...)
		assert.Check(t, is.ErrorContains(err, c.err))
	}
}

func TestPlanDiff(t *testing.T) {
	p := &Plan{Kind: Install, Changes: []FileChange{
		{Op: CreateDir, Path: "/etc/crio/crio.conf.d"},
		{Op: Create, Path: "/etc/crio/crio.conf.d/99-kata-deploy.conf", After: []byte("a\n")},
		{Op: Modify, Path: "/etc/containerd/config.toml", Before: []byte("x\ny\n"), After: []byte("x\nz\n")},
		{Op: Delete, Path: "/etc/old.toml", Before: []byte("old\n")},
		{Op: CreateSymlink, Path: "/usr/local/bin/containerd-shim-kata-qemu-v2", Target: "/opt/kata/bin/containerd-shim-kata-v2"},
		{Op: RemoveSymlink, Path: "/usr/local/bin/containerd-shim-kata-v2", Target: "/opt/kata/bin/containerd-shim-kata-v2"},
		{Op: RemoveDir, Path: "/usr/local/bin"},
	}, Notes: []string{"something to know"}}
	golden.Assert(t, p.Diff(), "every-op.diff.golden")
	assert.Check(t, !p.Empty())
	assert.Check(t, (&Plan{}).Empty())
	assert.Check(t, is.DeepEqual(p.Paths(), []string{"/etc/crio/crio.conf.d", "/etc/crio/crio.conf.d/99-kata-deploy.conf", "/etc/containerd/config.toml", "/etc/old.toml",
		"/usr/local/bin/containerd-shim-kata-qemu-v2", "/usr/local/bin/containerd-shim-kata-v2", "/usr/local/bin"}))
}

func TestOpString(t *testing.T) {
	// Every Op names itself: plans are printed and logged by these names.
	for op := Create; op <= RemoveSymlink; op++ {
		assert.Check(t, !strings.HasPrefix(op.String(), "Op("), "Op %d has no name", int(op))
	}
	assert.Check(t, is.Equal(Op(99).String(), "Op(99)"))
}

// Every variant's row is complete, and the paths the engines take from it
// are absolute host paths.
func TestVariantTableComplete(t *testing.T) {
	for _, f := range variantTable() {
		v := f.variant
		assert.Check(t, path.IsAbs(v.ConfigPath()), v)
		assert.Check(t, path.IsAbs(v.CRISocket()), v)
		assert.Check(t, v.DropInDir() == "" || path.IsAbs(v.DropInDir()), v)
		assert.Check(t, len(f.signatures) > 0, v)
		assert.Check(t, (v.RuntimeUnit() == "") == (v.KubeletUnit() == ""), v)
	}
	assert.Check(t, is.Equal(VariantCRIO.ConfigPath(), "/etc/crio/crio.conf"))
	assert.Check(t, is.Equal(VariantCRIO.DropInDir(), "/etc/crio/crio.conf.d"))
	assert.Check(t, is.Equal(VariantK0s.ConfigPath(), "/etc/k0s/containerd.d"))
	for _, f := range variantTable() {
		assert.Check(t, f.strategy != "", f.variant)
		assert.Check(t, f.variant.Validate(), f.variant)
	}
}

// A variant not in the table, the empty one included, is refused and has
// no facts: it is never taken for stand-alone containerd (issue 19 item 8).
func TestUnknownVariantRefused(t *testing.T) {
	for _, tc := range []struct {
		v    Variant
		want string
	}{
		{v: "", want: "no container runtime variant given (want one of k3s, k3s-agent, rke2-server, rke2-agent, k0s, microk8s, containerd, crio)"},
		{v: "bogus", want: `unknown container runtime "bogus" (want one of k3s, `},
		{v: "Containerd", want: `unknown container runtime "Containerd"`},
		{v: "containerd ", want: `unknown container runtime "containerd "`},
	} {
		t.Run(string(tc.v), func(t *testing.T) {
			assert.Check(t, is.ErrorContains(tc.v.Validate(), tc.want))
			_, err := ParseVariant(string(tc.v))
			assert.Check(t, is.ErrorContains(err, tc.want))
			assert.Check(t, is.Equal(tc.v.Kind(), Kind("")))
			assert.Check(t, is.Equal(tc.v.ConfigStrategy(), ConfigStrategy("")))
			assert.Check(t, is.Equal(tc.v.ConfigPath(), ""))
			assert.Check(t, is.Equal(tc.v.CRISocket(), ""))
			assert.Check(t, is.Equal(tc.v.RuntimeUnit(), ""))
		})
	}
}

func TestVersionIsZero(t *testing.T) {
	for _, tc := range []struct {
		v    Version
		zero bool
	}{
		{Version{}, true},
		{Version{Suffix: "k3s1"}, true},
		{Version{Patch: 1}, false},
		{Version{Major: 1, Minor: 6}, false},
		{Version{Minor: 1}, false},
	} {
		assert.Check(t, is.Equal(tc.v.IsZero(), tc.zero), tc.v.String())
	}
}

// TestVariantFacts pins every variant's facts as the engines, the
// installer and detection read them: a golden to review when one changes.
func TestVariantFacts(t *testing.T) {
	var b strings.Builder
	for _, f := range variantTable() {
		v := f.variant
		fmt.Fprintf(&b, "%s\n  kind %s\n  config strategy %s\n  runtime unit %q\n  kubelet unit %q\n  CRI socket %s\n  config %s\n  drop-in dir %q\n  detected by %s\n",
			v, v.Kind(), v.ConfigStrategy(), v.RuntimeUnit(), v.KubeletUnit(), v.CRISocket(), v.ConfigPath(), v.DropInDir(), strings.Join(f.signatures, ", "))
	}
	golden.Assert(t, b.String(), "all.variants.golden")
}
