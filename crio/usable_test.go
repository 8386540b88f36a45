package crio

import (
	"context"
	"os"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// New refuses arguments that would have it write at the root of the host,
// or for no CRI-O release, with an error that names the argument (issue 19
// item 8); nothing is written.
func TestNewRefusesBadArguments(t *testing.T) {
	v134 := runtime.Version{Major: 1, Minor: 34}
	for _, tc := range []struct {
		name    string
		root    string // "host" is the test's absolute host root
		version runtime.Version
		opts    []Option
		want    string
	}{
		{name: "empty host root", root: "", version: v134, want: "crio engine: host root is empty"},
		{name: "relative host root", root: "rel", version: v134, want: `crio engine: host root "rel" is a relative path`},
		{name: "zero version", root: "host", want: "crio engine: CRI-O version is 0.0.0 (unset)"},
		{name: "empty drop-in dir", root: "host", version: v134, opts: []Option{WithConfigDir("")},
			want: `crio engine: WithConfigDir(""): want the host path of CRI-O's drop-in directory, e.g. /etc/crio/crio.conf.d`},
		{name: "host root as drop-in dir", root: "host", version: v134, opts: []Option{WithConfigDir("/")}, want: `crio engine: WithConfigDir("/")`},
		{name: "empty config file", root: "host", version: v134, opts: []Option{WithConfigFile("")},
			want: `crio engine: WithConfigFile(""): want the host path of CRI-O's config file, e.g. /etc/crio/crio.conf`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := t.TempDir()
			t.Chdir(host)
			root := tc.root
			if root == "host" {
				root = host
			}
			e, err := New(root, tc.version, tc.opts...)
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
			assert.Check(t, is.ErrorIs(e.Apply(ctx, &runtime.Plan{Engine: "crio/kata-deploy"}), errNotConstructed))
			_, err = e.ConfigWritten()
			assert.Check(t, is.ErrorIs(err, errNotConstructed))
			assert.Check(t, is.ErrorContains(err, "build it with crio.New"))
		})
	}
}
