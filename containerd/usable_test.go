package containerd

import (
	"context"
	"os"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// New refuses arguments that would have it configure some other runtime,
// or write at the root of the host, with an error that names the argument
// (issue 19 item 8); nothing is written.
func TestNewRefusesBadArguments(t *testing.T) {
	v17 := runtime.Version{Major: 1, Minor: 7, Patch: 22}
	for _, tc := range []struct {
		name    string
		root    string // "" stays empty; "host" is made absolute below
		variant runtime.Variant
		version runtime.Version
		opts    []Option
		want    string
	}{
		{name: "empty host root", root: "", variant: runtime.VariantContainerd, version: v17, want: "containerd engine: host root is empty"},
		{name: "relative host root", root: "rel", variant: runtime.VariantContainerd, version: v17, want: `containerd engine: host root "rel" is a relative path`},
		{name: "empty variant", root: "host", variant: "", version: v17, want: "containerd engine: no container runtime variant given"},
		{name: "unknown variant", root: "host", variant: "dockerd", version: v17, want: `containerd engine: unknown container runtime "dockerd"`},
		{name: "crio variant", root: "host", variant: runtime.VariantCRIO, version: v17, want: `variant "crio" does not run containerd`},
		{name: "zero version", root: "host", variant: runtime.VariantContainerd, want: "containerd engine: containerd version is 0.0.0 (unset)"},
		{name: "empty config path", root: "host", variant: runtime.VariantContainerd, version: v17, opts: []Option{WithConfigPath("")},
			want: `containerd engine: WithConfigPath(""): want the host path of containerd's config file, e.g. /etc/containerd/config.toml`},
		{name: "host root as config path", root: "host", variant: runtime.VariantK0s, version: v17, opts: []Option{WithConfigPath("/")},
			want: `containerd engine: WithConfigPath("/")`},
		{name: "dot as config path", root: "host", variant: runtime.VariantK0s, version: v17, opts: []Option{WithConfigPath(".")},
			want: `containerd engine: WithConfigPath(".")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := t.TempDir()
			t.Chdir(host)
			root := tc.root
			if root == "host" {
				root = host
			}
			e, err := New(root, tc.variant, tc.version, tc.opts...)
			assert.Check(t, is.ErrorContains(err, tc.want))
			assert.Check(t, e == nil)
			entries, err := os.ReadDir(host)
			assert.NilError(t, err)
			assert.Check(t, is.Len(entries, 0))
		})
	}
}

// An Engine New did not build says so from every method instead of
// panicking.
func TestZeroEngineRefusesToWork(t *testing.T) {
	hs, err := runtime.Handlers([]string{"qemu"})
	assert.NilError(t, err)
	spec := runtime.Spec{Handlers: hs}
	for name, e := range map[string]*Engine{"zero": {}, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			_, err := e.PlanInstall(ctx, spec)
			assert.Check(t, is.ErrorIs(err, errNotConstructed))
			_, err = e.PlanUninstall(ctx)
			assert.Check(t, is.ErrorIs(err, errNotConstructed))
			assert.Check(t, is.ErrorIs(e.Apply(ctx, &runtime.Plan{Engine: "containerd/kata-deploy"}), errNotConstructed))
			_, err = e.ConfigWritten()
			assert.Check(t, is.ErrorIs(err, errNotConstructed))
			assert.Check(t, is.ErrorContains(err, "build it with containerd.New"))
		})
	}
}

// The variant table, not a switch's default, decides how a variant is
// configured: one without a strategy this engine knows is refused, not
// configured as stand-alone containerd.
func TestUnknownStrategyRefused(t *testing.T) {
	host := t.TempDir()
	e, err := New(host, runtime.VariantContainerd, runtime.Version{Major: 2, Minor: 2})
	assert.NilError(t, err)
	e.variant = "bogus" // what New now refuses
	hs, err := runtime.Handlers([]string{"qemu"})
	assert.NilError(t, err)
	_, err = e.PlanInstall(context.Background(), runtime.Spec{Handlers: hs})
	assert.Check(t, is.ErrorContains(err, `containerd engine: variant "bogus": config strategy "" unknown to this engine`))
}
