package artifacts

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/fs"
)

// Uninstalling, or planning to, what is not installed creates nothing
// (issue 19 item 5): not the destination's parents, not /opt on an empty
// host. The whole host tree, inodes and change times included, is as it
// was.
func TestUninstallOfNothingCreatesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup payloadSpec // the host's tree before
		opts  []Option
	}{
		{name: "empty host"},
		{name: "empty host, prefix and suffix", opts: []Option{WithPrefix("/usr/local/lib"), WithSuffix("tdx")}},
		{name: "opt without kata", setup: payloadSpec{"opt": {isDir: true}}},
		{name: "part of the prefix", setup: payloadSpec{"usr": {isDir: true}, "usr/share": {isDir: true}},
			opts: []Option{WithPrefix("/usr/local/lib")}},
		{name: "another install beside", setup: payloadSpec{"opt": {isDir: true}, "opt/kata-snp": {isDir: true}, "opt/kata-snp/x": {data: "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := newHost(t)
			tc.setup.writeDir(t, host, ".")
			before := snapshot(t, host)

			plan, err := PlanUninstall(context.Background(), host, tc.opts...)
			assert.NilError(t, err)
			assert.Check(t, !plan.HasChanges(), plan.String())
			rep, err := Uninstall(context.Background(), host, tc.opts...)
			assert.NilError(t, err)
			assert.Check(t, !rep.HasChanges(), rep.String())
			_, err = Status(context.Background(), host, tc.opts...)
			assert.Check(t, errors.Is(err, ErrNotInstalled), "%v", err)

			assert.Check(t, is.DeepEqual(snapshot(t, host), before))
			assert.Check(t, fs.Equal(host, expected(t, tc.setup)))
		})
	}
}

// An uninstall of an installation another run removed meanwhile, which
// left its parents in place, does not recreate what is gone.
func TestUninstallTwiceCreatesNothing(t *testing.T) {
	host := newHost(t)
	_, err := Install(context.Background(), host, payloadDir(t, kataStatic("v1")), WithPrefix("/usr/local/lib"))
	assert.NilError(t, err)
	_, err = Uninstall(context.Background(), host, WithPrefix("/usr/local/lib"))
	assert.NilError(t, err)
	entries, err := os.ReadDir(host)
	assert.NilError(t, err)
	assert.Check(t, is.Len(entries, 0))
	_, err = Uninstall(context.Background(), host, WithPrefix("/usr/local/lib"))
	assert.NilError(t, err)
	_, err = os.Lstat(filepath.Join(host, "usr"))
	assert.Check(t, errors.Is(err, os.ErrNotExist), "%v", err)
}
