package systemd

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// Dial refuses an empty or relative host root before it dials anything
// (issue 19 item 8), with WithSocket too.
func TestDialRefusesEmptyOrRelativeHostRoot(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "private") // nothing listens
	for _, tc := range []struct {
		root string
		opts []Option
		want string
	}{
		{root: "", want: "systemd: host root is empty"},
		{root: "host", want: `systemd: host root "host" is a relative path`},
		{root: "", opts: []Option{WithSocket(sock)}, want: "systemd: host root is empty"},
	} {
		c, err := Dial(context.Background(), tc.root, tc.opts...)
		assert.Check(t, is.ErrorContains(err, tc.want), tc.root)
		assert.Check(t, c == nil)
	}
}

// A Client that Dial did not make says so from every method instead of
// panicking.
func TestZeroClientRefusesToWork(t *testing.T) {
	for name, c := range map[string]*Client{"zero": {}, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			_, err := c.Status(ctx, "containerd.service")
			assert.Check(t, is.ErrorIs(err, errNotDialled))
			_, err = c.Exists(ctx, "containerd.service")
			assert.Check(t, is.ErrorIs(err, errNotDialled))
			_, err = c.Restart(ctx, "containerd.service")
			assert.Check(t, is.ErrorIs(err, errNotDialled))
			_, _, err = c.RestartIfNeeded(ctx, "containerd.service", time.Now())
			assert.Check(t, is.ErrorIs(err, errNotDialled))
			assert.Check(t, is.ErrorIs(c.DaemonReload(ctx), errNotDialled))
			err = c.Close()
			assert.Check(t, is.ErrorIs(err, errNotDialled))
			assert.Check(t, is.ErrorContains(err, "connect with systemd.Dial"))
		})
	}
}
