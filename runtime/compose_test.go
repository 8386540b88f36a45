package runtime

import (
	"errors"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// A relative prefix would give relative shim and config paths, which a
// container runtime resolves against its own working directory.
func TestHandlersRefuseRelativePrefix(t *testing.T) {
	for _, p := range []string{"opt", "./opt", "", "usr/local"} {
		_, err := Handlers([]string{"qemu"}, WithPrefix(p))
		assert.Check(t, is.ErrorContains(err, "want an absolute host path"), "prefix %q", p)
	}
	hs, err := Handlers([]string{"qemu"}, WithPrefix("/usr/local/"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(hs[0].ShimPath, "/usr/local/kata/bin/containerd-shim-kata-v2"))
}

func TestHandlersRefuseNameTooLong(t *testing.T) {
	_, err := Handlers([]string{"qemu-coco-dev-runtime-rs"}, WithSuffix(strings.Repeat("a", 40)))
	assert.Check(t, is.ErrorContains(err, "use a shorter install suffix"))
}

func TestCheckHandlerName(t *testing.T) {
	for _, ok := range []string{"kata", "kata-qemu", "k", "a1-b2", strings.Repeat("a", 63)} {
		assert.Check(t, CheckHandlerName(ok), ok)
	}
	for _, bad := range []string{"", "Kata", "kata_qemu", "-kata", "kata-", "kata.qemu", "kata qemu", "kata]\n[x", strings.Repeat("a", 64)} {
		assert.Check(t, is.ErrorContains(CheckHandlerName(bad), "want a DNS-1123 label"), "%q", bad)
	}
}

func TestSpecValidate(t *testing.T) {
	good, err := Handlers([]string{"qemu", "clh"})
	assert.NilError(t, err)
	assert.Check(t, Spec{Handlers: good, Mode: ModeRuntimeClass}.Validate())
	assert.Check(t, Spec{Handlers: good}.Validate(), "empty mode means runtimeclass")

	with := func(edit func(*Handler)) []Handler {
		hs := append([]Handler(nil), good...)
		edit(&hs[1])
		return hs
	}
	for _, c := range []struct {
		name string
		spec Spec
		err  string
	}{
		{"no handlers", Spec{}, "no handlers"},
		{"bad mode", Spec{Handlers: good, Mode: "sometimes"}, `unknown mode "sometimes"`},
		{"bad name", Spec{Handlers: with(func(h *Handler) { h.Name = "Kata_QEMU" })}, `handler name "Kata_QEMU"`},
		{"twice", Spec{Handlers: with(func(h *Handler) { h.Name = "kata" })}, "handler kata given twice"},
		{"relative shim", Spec{Handlers: with(func(h *Handler) { h.ShimPath = "opt/kata/bin/containerd-shim-kata-v2" })}, "shim path"},
		{"unclean config", Spec{Handlers: with(func(h *Handler) { h.ConfigPath = "/opt/kata/../etc/x.toml" })}, "config path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Check(t, is.ErrorContains(c.spec.Validate(), c.err))
		})
	}
}

// The stale-plan error is public, for errors.Is and errors.As alike.
func TestStalePlanError(t *testing.T) {
	var err error = &StalePlanError{Path: "/etc/containerd/config.toml"}
	err = errors.Join(errors.New("apply"), err)
	assert.Check(t, errors.Is(err, ErrStalePlan))
	var se *StalePlanError
	assert.Assert(t, errors.As(err, &se))
	assert.Check(t, is.Equal(se.Path, "/etc/containerd/config.toml"))
	assert.Check(t, is.ErrorContains(se, "changed since the plan was made; plan again"))
	assert.Check(t, !errors.Is(errors.New("x"), ErrStalePlan))
}

func TestForeignPlanError(t *testing.T) {
	err := &ForeignPlanError{Made: "containerd/kata-deploy", Applier: "crio/kata-deploy"}
	assert.Check(t, is.Error(err, "the plan was made by containerd/kata-deploy, not by crio/kata-deploy: apply a plan with the engine that made it"))
	assert.Check(t, is.ErrorContains(&ForeignPlanError{Applier: "crio/x"}, "made by no engine"))
}

// Installation is the one place the layout is computed: Handlers with
// options and Installation.Handlers agree, the zero value is the default
// install, and a bad prefix or suffix is refused.
func TestInstallation(t *testing.T) {
	zero := Installation{}
	assert.Check(t, is.Equal(zero.Dest(), "/opt/kata"))
	assert.Check(t, is.Equal(Installation{Prefix: "/usr/local/"}.Dest(), "/usr/local/kata"))
	dragonball, err := LookupShim("dragonball")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(zero.ShimPath(dragonball), "/opt/kata/runtime-rs/bin/containerd-shim-kata-v2"))
	assert.Check(t, is.Equal(zero.ConfigPath(dragonball), "/opt/kata/share/defaults/kata-containers/runtime-rs/runtimes/dragonball/configuration-dragonball.toml"))
	assert.Check(t, is.Equal(zero.EngineName(), "kata-deploy"))

	inst := Installation{Prefix: "/usr/local", Suffix: "canary"}
	byOptions, err := Handlers([]string{"qemu", "dragonball"}, WithPrefix("/usr/local"), WithSuffix("canary"), WithDefaultShim("dragonball"))
	assert.NilError(t, err)
	// The installation's own prefix and suffix win over options.
	byInstall, err := inst.Handlers([]string{"qemu", "dragonball"}, WithDefaultShim("dragonball"), WithPrefix("/opt"))
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(byOptions, byInstall))
	assert.Check(t, is.Equal(byInstall[0].Name, inst.DefaultHandlerName()))
	assert.Check(t, is.Equal(byInstall[2].ConfigPath, inst.ConfigPath(dragonball)))

	for _, bad := range []Installation{{Prefix: "opt"}, {Suffix: "Canary"}, {Suffix: "-x"}} {
		assert.Check(t, bad.Validate() != nil, "%+v", bad)
		_, err := bad.Handlers([]string{"qemu"})
		assert.Check(t, err != nil, "%+v", bad)
	}
}

// A plan refused for a file it only read says so, naming the file.
func TestStalePlanErrorRead(t *testing.T) {
	err := &StalePlanError{Path: "/etc/containerd/config.toml", Read: true}
	assert.Check(t, is.Error(err, "/etc/containerd/config.toml: config changed since it was planned: re-plan"))
	assert.Check(t, errors.Is(err, ErrStalePlan))
}
