package artifacts

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// An empty or relative host root is refused by every entry point, before
// anything is read or written (issue 19 item 8): either would be taken
// from the working directory, here one that holds an installation at
// ./host that a relative root would reach.
func TestRelativeHostRootRefused(t *testing.T) {
	wd := t.TempDir()
	payload := payloadDir(t, kataStatic("v1"))
	assert.NilError(t, os.Mkdir(filepath.Join(wd, "host"), 0o755))
	_, err := Install(context.Background(), filepath.Join(wd, "host"), payload)
	assert.NilError(t, err)
	_, err = Install(context.Background(), wd, payload) // what "" would reach
	assert.NilError(t, err)
	before := snapshot(t, wd)
	t.Chdir(wd)

	entryPoints := map[string]func(root string) error{
		"Install": func(root string) error { _, err := Install(context.Background(), root, payload); return err },
		"Plan":    func(root string) error { _, err := Plan(context.Background(), root, payload); return err },
		"Uninstall": func(root string) error {
			_, err := Uninstall(context.Background(), root)
			return err
		},
		"PlanUninstall": func(root string) error { _, err := PlanUninstall(context.Background(), root); return err },
		"Status":        func(root string) error { _, err := Status(context.Background(), root); return err },
		"HostFS":        func(root string) error { _, err := HostFS(root); return err },
	}
	for _, tc := range []struct {
		root string
		want string
	}{
		{root: "", want: "host root is empty: give the absolute directory the host's root file system is at"},
		{root: "host", want: `host root "host" is a relative path, which would be taken from the working directory`},
		{root: "./host", want: `host root "./host" is a relative path`},
		{root: ".", want: `host root "." is a relative path`},
	} {
		for name, call := range entryPoints {
			t.Run(name+"/"+tc.root, func(t *testing.T) {
				assert.Check(t, is.ErrorContains(call(tc.root), tc.want))
			})
		}
	}
	assert.Check(t, is.DeepEqual(snapshot(t, wd), before))
}

// A payload, unlike a host root, may be named from the working directory.
func TestRelativePayloadAccepted(t *testing.T) {
	payload := payloadDir(t, kataStatic("v1"))
	t.Chdir(filepath.Dir(payload))
	host := newHost(t)
	_, err := Install(context.Background(), host, filepath.Base(payload))
	assert.NilError(t, err)
	_, err = Install(context.Background(), host, kataStatic("v1").tarball(t, "zst"))
	assert.NilError(t, err)
}
