package installer

import (
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// --systemd-socket is a host path: it resolves under the host root, with
// the host's symlinks, never in the installer's own file system.
func TestSystemdSocketIsAHostPath(t *testing.T) {
	host := t.TempDir()
	assert.NilError(t, os.MkdirAll(filepath.Join(host, "run/systemd"), 0o755))
	assert.NilError(t, os.Symlink("/run", filepath.Join(host, "var-run")))
	for given, want := range map[string]string{
		"":                           filepath.Join(host, "run/systemd/private"),
		"/run/systemd/private":       filepath.Join(host, "run/systemd/private"),
		"/var-run/systemd/private":   filepath.Join(host, "run/systemd/private"),
		"/../../etc/systemd/private": filepath.Join(host, "etc/systemd/private"),
	} {
		c := &Config{HostRoot: host, SystemdSocket: given}
		got, err := c.systemdSocket(mustRoot(t, host))
		assert.NilError(t, err)
		assert.Check(t, is.Equal(got, want), "--systemd-socket %q", given)
	}
}
