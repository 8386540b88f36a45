package containerd

// Hostile and unlucky hosts (docs/hostile-hosts.md): symlinked config
// paths, hand-edited managed blocks, huge and garbage configs.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	"github.com/kata-deploy/kata-deploy/internal/tomltext"
	"github.com/kata-deploy/kata-deploy/runtime"
)

func hostileEngine(t testing.TB, host, version string) *Engine {
	t.Helper()
	v, err := runtime.ParseVersion(version)
	assert.NilError(t, err)
	e, err := New(host, runtime.VariantContainerd, v)
	assert.NilError(t, err)
	return e
}

func installThenUninstall(t *testing.T, host, version string) {
	t.Helper()
	ctx := context.Background()
	e := hostileEngine(t, host, version)
	spec := specFor(t, hostCase{})
	plan, err := e.PlanInstall(ctx, spec)
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, plan))
	undo, err := e.PlanUninstall(ctx)
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, undo))
}

// A config path that is a symlink (to a missing file, or through a
// symlinked directory) is written through; uninstall removes what was
// created and leaves the user's links exactly as they were.
func TestSymlinkedConfigPaths(t *testing.T) {
	for _, version := range []string{"1.7.0", "2.2.9"} {
		t.Run("dangling file link/"+version, func(t *testing.T) {
			host := hosttest.Write(t, []string{"/etc/containerd"}, nil)
			assert.NilError(t, os.Symlink("/etc/passwd", filepath.Join(host, "etc/containerd/config.toml")))
			before := hosttest.Snapshot(t, host)
			e := hostileEngine(t, host, version)
			plan, err := e.PlanInstall(context.Background(), specFor(t, hostCase{}))
			assert.NilError(t, err)
			assert.NilError(t, e.Apply(context.Background(), plan))
			_, err = os.Stat(filepath.Join(host, "etc/passwd"))
			assert.NilError(t, err, "the link's target holds the new config")
			undo, err := e.PlanUninstall(context.Background())
			assert.NilError(t, err)
			assert.NilError(t, e.Apply(context.Background(), undo))
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
		})
		t.Run("symlinked directory/"+version, func(t *testing.T) {
			host := hosttest.Write(t, []string{"/etc"}, nil)
			assert.NilError(t, os.Symlink("/elsewhere/cd", filepath.Join(host, "etc/containerd")))
			before := hosttest.Snapshot(t, host)
			installThenUninstall(t, host, version)
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
		})
		t.Run("symlinked directory with config/"+version, func(t *testing.T) {
			host := hosttest.Write(t, []string{"/etc"}, map[string][]byte{
				"/elsewhere/cd/config.toml": []byte("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"x\"\n")})
			assert.NilError(t, os.Symlink("../elsewhere/cd", filepath.Join(host, "etc/containerd")))
			before := hosttest.Snapshot(t, host)
			installThenUninstall(t, host, version)
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
		})
	}
}

const userConfig = "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.local/pause:3.9\"\n"

// installBlock installs on containerd 1.7 (which gets the managed block)
// and returns the engine, the host and the config's host path.
func installBlock(t *testing.T) (*Engine, string, string) {
	t.Helper()
	host := hosttest.Write(t, nil, map[string][]byte{"/etc/containerd/config.toml": []byte(userConfig)})
	e := hostileEngine(t, host, "1.7.0")
	plan, err := e.PlanInstall(context.Background(), specFor(t, hostCase{}))
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(context.Background(), plan))
	return e, host, filepath.Join(host, "etc/containerd/config.toml")
}

func editFile(t *testing.T, p string, edit func(string) string) {
	t.Helper()
	data, err := os.ReadFile(p)
	assert.NilError(t, err)
	assert.NilError(t, os.WriteFile(p, []byte(edit(string(data))), 0o644))
}

func TestUninstallAfterMarkersRemoved(t *testing.T) {
	begin, end := blockMarkers("kata-deploy")
	for name, drop := range map[string][]string{"begin": {begin}, "end": {end}, "both": {begin, end}} {
		t.Run(name, func(t *testing.T) {
			e, host, p := installBlock(t)
			editFile(t, p, func(s string) string {
				for _, m := range drop {
					s = strings.Replace(s, m+"\n", "", 1)
				}
				return s + "\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"
			})
			undo, err := e.PlanUninstall(context.Background())
			assert.NilError(t, err)
			assert.NilError(t, e.Apply(context.Background(), undo))
			got, err := os.ReadFile(p)
			assert.NilError(t, err)
			assert.Check(t, !strings.Contains(string(got), "kata"), "Kata tables left behind:\n%s", got)
			assert.Check(t, is.Contains(string(got), "sandbox_image"))
			assert.Check(t, is.Contains(string(got), "config_path = \"/etc/containerd/certs.d\""), "the user's later edit is kept")
			_, err = parseDocument(context.Background(), p, got, "kata-deploy")
			assert.NilError(t, err)
			_, err = os.Stat(filepath.Join(host, "var/lib/kata-deploy/containerd.json"))
			assert.Check(t, os.IsNotExist(err), "journal left behind")
		})
	}
}

func TestUninstallRefusesChangedTablesWithoutMarkers(t *testing.T) {
	begin, end := blockMarkers("kata-deploy")
	e, host, p := installBlock(t)
	editFile(t, p, func(s string) string {
		s = strings.Replace(s, begin+"\n", "", 1)
		s = strings.Replace(s, end+"\n", "", 1)
		return strings.Replace(s, "privileged_without_host_devices = true", "privileged_without_host_devices = false", 1)
	})
	before := hosttest.Snapshot(t, host)
	_, err := e.PlanUninstall(context.Background())
	assert.ErrorContains(t, err, "was changed since")
	assert.ErrorContains(t, err, "run uninstall again")
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before), "a refused uninstall changed the host")
}

func TestUninstallKeepsUserLinesInsideBlock(t *testing.T) {
	_, end := blockMarkers("kata-deploy")
	e, host, p := installBlock(t)
	editFile(t, p, func(s string) string {
		return strings.Replace(s, end, "# my note\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/mine\"\n"+end, 1)
	})
	edited, err := os.ReadFile(p)
	assert.NilError(t, err)
	undo, err := e.PlanUninstall(context.Background())
	assert.NilError(t, err)
	assert.Check(t, is.Contains(strings.Join(undo.Notes, "\n"), "a copy of the file as it was is kept at /var/lib/kata-deploy/saved/etc/containerd/config.toml."))
	assert.NilError(t, e.Apply(context.Background(), undo))
	got, err := os.ReadFile(p)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(got), userConfig))
	saved, err := filepath.Glob(filepath.Join(host, "var/lib/kata-deploy/saved/etc/containerd/config.toml.*"))
	assert.NilError(t, err)
	assert.Assert(t, is.Len(saved, 1))
	copyData, err := os.ReadFile(saved[0])
	assert.NilError(t, err)
	assert.Check(t, bytes.Equal(copyData, edited))
}

func TestUninstallKeepsUserEditOfDropIn(t *testing.T) {
	host := hosttest.Write(t, nil, map[string][]byte{"/etc/containerd/config.toml": []byte("version = 3\n")})
	e := hostileEngine(t, host, "2.2.9")
	plan, err := e.PlanInstall(context.Background(), specFor(t, hostCase{}))
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(context.Background(), plan))
	dropIn := filepath.Join(host, "etc/containerd/kata-deploy.toml")
	editFile(t, dropIn, func(s string) string { return s + "# tuned by ops\n" })
	edited, _ := os.ReadFile(dropIn)
	undo, err := e.PlanUninstall(context.Background())
	assert.NilError(t, err)
	assert.Check(t, is.Contains(strings.Join(undo.Notes, "\n"), "someone edited this file kata-deploy wrote"))
	assert.NilError(t, e.Apply(context.Background(), undo))
	saved, _ := filepath.Glob(filepath.Join(host, "var/lib/kata-deploy/saved/etc/containerd/kata-deploy.toml.*"))
	assert.Assert(t, is.Len(saved, 1))
	copyData, _ := os.ReadFile(saved[0])
	assert.Check(t, bytes.Equal(copyData, edited))
}

// Parse errors quote at most a short, escaped excerpt of the file, which
// may be any file a symlink points at.
func TestConfigErrorsDoNotEchoTheFile(t *testing.T) {
	for name, content := range map[string][]byte{
		"shadow":  []byte("root:$6$secret-hash-that-must-not-leak:19000:0:99999:7:::\n"),
		"20MB":    append([]byte("a = "), bytes.Repeat([]byte{'x'}, 20<<20)...),
		"binary":  []byte("\x7fELF\x02\x01\x01\x00\x1b]0;pwned\x07\xff"),
		"toobig":  bytes.Repeat([]byte("# comment\n"), (tomltext.MaxConfigSize/10)+1),
		"badline": append(bytes.Repeat([]byte("k = 1\n"), 3), []byte("[oops\n")...),
	} {
		t.Run(name, func(t *testing.T) {
			host := hosttest.Write(t, nil, map[string][]byte{"/etc/containerd/config.toml": content})
			before := hosttest.Snapshot(t, host)
			_, err := hostileEngine(t, host, "1.7.0").PlanInstall(context.Background(), specFor(t, hostCase{}))
			assert.Assert(t, err != nil)
			msg := err.Error()
			assert.Check(t, len(msg) < 250, "%d-byte error: %.300q", len(msg), msg)
			assert.Check(t, !strings.Contains(msg, "must-not-leak") && !strings.Contains(msg, "pwned"), msg)
			assert.Check(t, is.Contains(msg, "/etc/containerd/config.toml"))
			if name == "toobig" {
				assert.Check(t, is.Contains(msg, "larger than 4 MiB"))
			}
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
		})
	}
}

func TestPlanStopsWhenCancelled(t *testing.T) {
	host := hosttest.Write(t, nil, map[string][]byte{"/etc/containerd/config.toml": hugeTable(tomltext.MaxConfigSize - 1000)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := hostileEngine(t, host, "1.7.0").PlanInstall(ctx, specFor(t, hostCase{}))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// hugeTable is a valid config of about size bytes whose CRI plugin table
// holds one key per line: the shape go-toml decodes in quadratic time.
func hugeTable(size int) []byte {
	var b bytes.Buffer
	b.WriteString(userConfig)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "  key_%d = %d\n", i, i)
	}
	return b.Bytes()
}

// BenchmarkPlanHostile measures a whole install plan (read, decode, edit,
// verify) on configs of 1, 4 and 16 MB of keys in one table, for the
// in-place edit (1.7) and the drop-in (2.2): time grows linearly with size
// up to the 4 MiB cap, and a 16 MB file is refused before it is read.
func BenchmarkPlanHostile(b *testing.B) {
	for _, version := range []string{"1.7.0", "2.2.9"} {
		for _, mb := range []int{1, 4, 16} {
			config := hugeTable(mb * 1000 * 1000)
			b.Run(fmt.Sprintf("containerd-%s/%dMB", version, mb), func(b *testing.B) {
				e := hostileEngine(b, benchHost(b, config), version)
				spec := specFor(b, hostCase{})
				b.SetBytes(int64(len(config)))
				for b.Loop() {
					_, err := e.PlanInstall(context.Background(), spec)
					if tooBig := len(config) > tomltext.MaxConfigSize; (err != nil) != tooBig {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
