package artifacts_test

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/artifacts"
	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
)

func smallPayload(t *testing.T) string {
	t.Helper()
	payload := t.TempDir()
	for name, content := range map[string]string{
		"opt/kata/bin/containerd-shim-kata-v2":                            "shim",
		"opt/kata/share/defaults/kata-containers/configuration-qemu.toml": "[hypervisor.qemu]\n",
		"opt/kata/share/defaults/kata-containers/configuration-clh.toml":  "[hypervisor.clh]\n",
	} {
		p := filepath.Join(payload, name)
		assert.NilError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		assert.NilError(t, os.WriteFile(p, []byte(content), 0o755))
	}
	return payload
}

// The handlers come from where the payload is: an importer gives the
// prefix and suffix once, to artifacts, and the config cannot point
// elsewhere.
func TestReportHandlersFollowThePayload(t *testing.T) {
	ctx := context.Background()
	host := t.TempDir()
	rep, err := artifacts.Plan(ctx, host, smallPayload(t), artifacts.WithPrefix("/usr/local"), artifacts.WithSuffix("canary"))
	assert.NilError(t, err)
	hs, err := rep.Handlers([]string{"qemu", "clh"}, kataruntime.WithDefaultShim("clh"), kataruntime.WithPrefix("/opt"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(hs[0].Name, "kata-canary"))
	assert.Check(t, is.Equal(hs[0].Shim, "clh"))
	for _, h := range hs {
		assert.Check(t, is.Equal(h.ShimPath, "/usr/local/kata-canary/bin/containerd-shim-kata-v2"))
		assert.Check(t, is.Equal(h.ConfigPath, rep.Shims[h.Shim]))
	}
	_, err = rep.Handlers([]string{"qemu", "fc"})
	assert.Check(t, is.ErrorContains(err, "has no Kata config for shim fc (it has: clh, qemu)"))
}

// Handlers built by hand without the payload's prefix are what the README
// once led to: the config at /opt/kata, the payload elsewhere. The report
// refuses them.
func TestCheckHandlersRefusesAnotherPrefix(t *testing.T) {
	ctx := context.Background()
	host := t.TempDir()
	rep, err := artifacts.Install(ctx, host, smallPayload(t), artifacts.WithPrefix("/usr/local"))
	assert.NilError(t, err)

	forgot, err := kataruntime.Handlers([]string{"qemu"})
	assert.NilError(t, err)
	assert.Check(t, is.ErrorContains(rep.CheckHandlers(forgot), "outside the payload at /usr/local/kata"))

	same, err := kataruntime.Handlers([]string{"qemu"}, kataruntime.WithPrefix("/usr/local"))
	assert.NilError(t, err)
	assert.Check(t, rep.CheckHandlers(same))
	same[1].ConfigPath = "/usr/local/kata/share/defaults/kata-containers/configuration-qemu.toml"
	assert.Check(t, is.ErrorContains(rep.CheckHandlers(same), "but the payload put shim qemu's at"))
}

// HostFS resolves an absolute symlink inside the host root, as the host
// does, so detection sees the host's unit file rather than this machine's.
func TestHostFSForDetection(t *testing.T) {
	host := t.TempDir()
	unit := filepath.Join(host, "usr/lib/systemd/system/k3s.service")
	assert.NilError(t, os.MkdirAll(filepath.Dir(unit), 0o755))
	assert.NilError(t, os.WriteFile(unit, nil, 0o644))
	link := filepath.Join(host, "etc/systemd/system/k3s.service")
	assert.NilError(t, os.MkdirAll(filepath.Dir(link), 0o755))
	assert.NilError(t, os.Symlink("/usr/lib/systemd/system/k3s.service", link))

	fsys, err := artifacts.HostFS(host)
	assert.NilError(t, err)
	v, ev, err := kataruntime.DetectVariant(fsys, "")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(v, kataruntime.VariantK3s))
	assert.Check(t, is.Equal(ev[0].Path, "/etc/systemd/system/k3s.service"))

	_, err = artifacts.HostFS(filepath.Join(host, "missing"))
	assert.Check(t, err != nil)
}

// Handlers given before the payload are checked before anything is
// written: a shim the payload lacks, or handlers of another installation,
// leave the host as it was, from a directory or a tarball.
func TestWithHandlersRefusesBeforeWriting(t *testing.T) {
	ctx := context.Background()
	dir := smallPayload(t)
	tarball := filepath.Join(t.TempDir(), "kata.tar")
	writeTar(t, tarball, dir)
	inst := kataruntime.Installation{Prefix: "/usr/local"}
	lacking, err := inst.Handlers([]string{"qemu", "fc"})
	assert.NilError(t, err)
	elsewhere, err := kataruntime.Installation{}.Handlers([]string{"qemu"})
	assert.NilError(t, err)
	for _, payload := range []string{dir, tarball} {
		for _, tc := range []struct {
			handlers []kataruntime.Handler
			want     string
		}{
			{lacking, "has no Kata config for shim fc"},
			{elsewhere, "outside the payload at /usr/local/kata"},
		} {
			host := t.TempDir()
			_, err := artifacts.Install(ctx, host, payload, artifacts.WithInstallation(inst), artifacts.WithHandlers(tc.handlers))
			assert.Check(t, is.ErrorContains(err, tc.want), payload)
			entries, err := os.ReadDir(host)
			assert.NilError(t, err)
			assert.Check(t, is.Len(entries, 0), "%s left %v", payload, entries)
		}
		good, err := inst.Handlers([]string{"qemu", "clh"})
		assert.NilError(t, err)
		rep, err := artifacts.Install(ctx, t.TempDir(), payload, artifacts.WithInstallation(inst), artifacts.WithHandlers(good))
		assert.NilError(t, err)
		assert.Check(t, is.Equal(rep.Dest, inst.Dest()))
	}
}

// A relative prefix would install relative to nothing in particular, and
// the handlers built from it would be refused: artifacts refuses it too.
func TestRelativePrefixRefused(t *testing.T) {
	_, err := artifacts.Plan(context.Background(), t.TempDir(), smallPayload(t), artifacts.WithPrefix("opt"))
	assert.Check(t, is.ErrorContains(err, `install prefix "opt": want an absolute host path`))
}

// writeTar archives the tree at dir as a tarball at file.
func writeTar(t *testing.T, file, dir string) {
	t.Helper()
	f, err := os.Create(file)
	assert.NilError(t, err)
	defer f.Close()
	tw := tar.NewWriter(f)
	assert.NilError(t, tw.AddFS(os.DirFS(dir)))
	assert.NilError(t, tw.Close())
}
