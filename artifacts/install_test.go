package artifacts

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/fs"
	"gotest.tools/v3/golden"
)

// expectedStatic is the whole host tree after installing kataStatic(v) at
// /opt/kata with no settings.
func expectedStatic(t *testing.T, version string) fs.Manifest {
	return expected(t, installed(kataStatic(version), "opt/kata", generatedEntries()))
}

func newHost(t *testing.T) string {
	t.Helper()
	host := t.TempDir()
	assert.NilError(t, os.Chmod(host, 0o755))
	return host
}

func TestInstallDirectoryOntoEmptyHost(t *testing.T) {
	host := newHost(t)
	payload := payloadDir(t, kataStatic("v1"))
	rep, err := Install(context.Background(), host, payload)
	assert.NilError(t, err)
	assert.Assert(t, fs.Equal(host, expectedStatic(t, "v1")))
	golden.Assert(t, rep.String(), "fresh.install.golden")
	assert.Check(t, !rep.Previous, "a first install finds no payload")
	assert.Check(t, is.DeepEqual(rep.Shims, map[string]string{
		"qemu": "/opt/kata/share/defaults/kata-containers/runtimes/qemu/configuration-qemu.toml",
		"clh":  "/opt/kata/share/defaults/kata-containers/runtimes/clh/configuration-clh.toml",
	}))

	st, err := Status(context.Background(), host)
	assert.NilError(t, err)
	data, err := json.MarshalIndent(st, "", "  ")
	assert.NilError(t, err)
	golden.Assert(t, string(data)+"\n", "fresh.status.golden")
}

func TestReinstallSamePayloadWritesNothing(t *testing.T) {
	for _, kind := range []string{"dir", "dir+manifest", "tar.zst"} {
		t.Run(kind, func(t *testing.T) {
			host := newHost(t)
			spec := kataStatic("v1")
			payload := payloadDir(t, spec)
			switch kind {
			case "dir+manifest":
				assert.NilError(t, os.WriteFile(filepath.Join(payload, "SHA256SUMS"), []byte(spec.sha256sums("opt/kata")), 0o644))
			case "tar.zst":
				payload = spec.tarball(t, "zst")
			}
			_, err := Install(context.Background(), host, payload)
			assert.NilError(t, err)
			// Reading must not write either: no atime update (relatime
			// would do one on the first read after the install).
			var rec0 unix.Stat_t
			assert.NilError(t, unix.Lstat(filepath.Join(host, "opt/kata", recordName), &rec0))
			link := filepath.Join(host, "opt/kata/share/kata-containers/vmlinux.container")
			var link0 unix.Stat_t
			assert.NilError(t, unix.Lstat(link, &link0))
			rep, err := Install(context.Background(), host, payload)
			assert.NilError(t, err)
			assert.Check(t, !rep.HasChanges())
			assert.Check(t, rep.Previous, "a re-install finds the payload")
			var rec1, link1 unix.Stat_t
			assert.NilError(t, unix.Lstat(filepath.Join(host, "opt/kata", recordName), &rec1))
			assert.NilError(t, unix.Lstat(link, &link1))
			assert.Check(t, is.Equal(rec1.Atim, rec0.Atim), "record atime")
			assert.Check(t, is.Equal(link1.Atim, link0.Atim), "symlink atime")
			before := snapshot(t, host)
			var mtime unix.Stat_t
			assert.NilError(t, unix.Stat(filepath.Join(host, "opt"), &mtime))

			// A hook proves no step of a write path runs.
			var steps []string
			rep, err = Install(context.Background(), host, payload, withStepHook(func(s string) { steps = append(steps, s) }))
			assert.NilError(t, err)
			assert.Check(t, !rep.HasChanges(), rep.String())
			assert.Check(t, is.Len(steps, 0))
			// Same inodes, same ctimes: nothing written, not even the record.
			assert.Check(t, is.DeepEqual(snapshot(t, host), before))
			var after unix.Stat_t
			assert.NilError(t, unix.Stat(filepath.Join(host, "opt"), &after))
			assert.Check(t, is.Equal(after.Mtim, mtime.Mtim), "nothing staged beside the tree")
		})
	}
}

func TestReinstallNoticesTamperedFile(t *testing.T) {
	host := newHost(t)
	payload := payloadDir(t, kataStatic("v1"))
	_, err := Install(context.Background(), host, payload)
	assert.NilError(t, err)
	// Same size, mtime put back: only the ctime (and content) tells.
	shim := filepath.Join(host, "opt/kata/bin/containerd-shim-kata-v2")
	fi, err := os.Stat(shim)
	assert.NilError(t, err)
	assert.NilError(t, os.WriteFile(shim, []byte("shim v2"), 0o755))
	assert.NilError(t, os.Chtimes(shim, fi.ModTime(), fi.ModTime()))

	rep, err := Install(context.Background(), host, payload)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(rep.Changed, []string{"/opt/kata/bin/containerd-shim-kata-v2"}))
	assert.Assert(t, fs.Equal(host, expectedStatic(t, "v1")))
}

func TestUpgradeReplacesWhatChanged(t *testing.T) {
	host := newHost(t)
	v1 := kataStatic("v1")
	_, err := Install(context.Background(), host, payloadDir(t, v1))
	assert.NilError(t, err)
	before := snapshot(t, host)

	// A running shim keeps the file it was started from.
	running, err := os.Open(filepath.Join(host, "opt/kata/bin/containerd-shim-kata-v2"))
	assert.NilError(t, err)
	defer running.Close()
	// A file kata-deploy does not own.
	assert.NilError(t, os.WriteFile(filepath.Join(host, "opt/kata/bin/local-tool"), []byte("mine"), 0o700))

	v2 := v1.with(payloadSpec{
		"bin/kata-monitor":            {mode: 0o755, data: "monitor"},
		"bin/containerd-shim-kata-v2": {mode: 0o755, data: "shim v2"},
	}, "bin/cloud-hypervisor")
	rep, err := Install(context.Background(), host, payloadDir(t, v2))
	assert.NilError(t, err)
	golden.Assert(t, rep.String(), "upgrade.install.golden")

	assert.Assert(t, fs.Equal(host, expected(t, installed(v2, "opt/kata", generatedEntries().with(payloadSpec{
		"bin/local-tool": {mode: 0o700, data: "mine"},
	})))))
	after := snapshot(t, host)
	data := make([]byte, 16)
	n, _ := running.ReadAt(data, 0)
	assert.Check(t, is.Equal(string(data[:n]), "shim v1"))
	// Unchanged files were kept (same inode), changed ones replaced.
	assert.Check(t, is.Equal(after["opt/kata/share/kata-containers/kata-containers.img"].Ino, before["opt/kata/share/kata-containers/kata-containers.img"].Ino))
	assert.Check(t, after["opt/kata/bin/containerd-shim-kata-v2"].Ino != before["opt/kata/bin/containerd-shim-kata-v2"].Ino)
	assert.Check(t, is.Equal(after["opt/kata/bin/local-tool"].Desc, "file 700 \"mine\""))

	// And the next run knows the kept files without reading them.
	var steps []string
	rep, err = Install(context.Background(), host, payloadDir(t, v2), withStepHook(func(s string) { steps = append(steps, s) }))
	assert.NilError(t, err)
	assert.Check(t, !rep.HasChanges())
	assert.Check(t, is.Len(steps, 0))
}

func TestUninstallRemovesExactlyWhatWasInstalled(t *testing.T) {
	host := newHost(t)
	_, err := Install(context.Background(), host, payloadDir(t, kataStatic("v1")), WithDebug())
	assert.NilError(t, err)
	assert.NilError(t, os.WriteFile(filepath.Join(host, "opt/kata/bin/local-tool"), []byte("mine"), 0o700))
	assert.NilError(t, os.WriteFile(filepath.Join(host, "opt/kata/share/defaults/kata-containers/runtimes/qemu/config.d/99-mine.toml"), []byte("x"), 0o644))

	plan, err := PlanUninstall(context.Background(), host)
	assert.NilError(t, err)
	rep, err := Uninstall(context.Background(), host)
	assert.NilError(t, err)
	golden.Assert(t, rep.String(), "foreign.uninstall.golden")
	assert.Check(t, is.DeepEqual(plan.Kept, rep.Kept))
	const rt = "opt/kata/share/defaults/kata-containers/runtimes"
	assert.Assert(t, fs.Equal(host, expected(t, payloadSpec{
		"opt":                     {isDir: true},
		"opt/kata":                {isDir: true},
		"opt/kata/bin":            {isDir: true},
		"opt/kata/bin/local-tool": {mode: 0o700, data: "mine"},
		"opt/kata/share":          {isDir: true},
		"opt/kata/share/defaults": {isDir: true},
		"opt/kata/share/defaults/kata-containers": {isDir: true},
		rt:                                 {isDir: true},
		rt + "/qemu":                       {isDir: true},
		rt + "/qemu/config.d":              {isDir: true},
		rt + "/qemu/config.d/99-mine.toml": {data: "x"},
	})))

	_, err = Status(context.Background(), host)
	assert.Check(t, errors.Is(err, ErrNotInstalled))
	// Again: nothing to do, no error.
	rep, err = Uninstall(context.Background(), host)
	assert.NilError(t, err)
	assert.Check(t, !rep.HasChanges())
}

func TestUninstallLeavesNothing(t *testing.T) {
	host := newHost(t)
	_, err := Install(context.Background(), host, payloadDir(t, kataStatic("v1")), WithPrefix("/usr/local/lib"), WithSuffix("tdx"))
	assert.NilError(t, err)
	assert.NilError(t, os.MkdirAll(filepath.Join(host, "usr/share"), 0o755)) // not ours
	_, err = Uninstall(context.Background(), host, WithPrefix("/usr/local/lib"), WithSuffix("tdx"))
	assert.NilError(t, err)
	// The parents it created went too, but for /usr, which now holds
	// something that is not ours.
	assert.Assert(t, fs.Equal(host, expected(t, payloadSpec{
		"usr": {isDir: true}, "usr/share": {isDir: true},
	})))
}

func TestPrefixAndSuffix(t *testing.T) {
	host := newHost(t)
	rep, err := Install(context.Background(), host, payloadDir(t, kataStatic("v1")), WithPrefix("/usr/local"), WithSuffix("tdx"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(rep.Dest, "/usr/local/kata-tdx"))
	assert.Check(t, is.Equal(rep.Shims["qemu"], "/usr/local/kata-tdx/share/defaults/kata-containers/runtimes/qemu/configuration-qemu.toml"))
	dropIn, err := os.ReadFile(filepath.Join(host, "usr/local/kata-tdx/share/defaults/kata-containers/runtimes/qemu/config.d", dropInPrefix))
	assert.NilError(t, err)
	golden.Assert(t, string(dropIn), "prefix-qemu.dropin.golden")
	_, err = os.Stat(filepath.Join(host, "opt"))
	assert.Check(t, os.IsNotExist(err))

	// A second installation side by side, and the default one, coexist.
	_, err = Install(context.Background(), host, payloadDir(t, kataStatic("v2")), WithPrefix("/usr/local"), WithSuffix("snp"))
	assert.NilError(t, err)
	_, err = Install(context.Background(), host, payloadDir(t, kataStatic("v3")))
	assert.NilError(t, err)
	for dir, v := range map[string]string{"usr/local/kata-tdx": "v1", "usr/local/kata-snp": "v2", "opt/kata": "v3"} {
		data, err := os.ReadFile(filepath.Join(host, dir, "bin/containerd-shim-kata-v2"))
		assert.NilError(t, err)
		assert.Check(t, is.Equal(string(data), "shim "+v))
	}
	_, err = Uninstall(context.Background(), host, WithPrefix("/usr/local"), WithSuffix("tdx"))
	assert.NilError(t, err)
	_, err = os.Stat(filepath.Join(host, "usr/local/kata-tdx"))
	assert.Check(t, os.IsNotExist(err))
	_, err = os.Stat(filepath.Join(host, "usr/local/kata-snp/bin/containerd-shim-kata-v2"))
	assert.Check(t, err)
}

func TestSettingsDropIns(t *testing.T) {
	host := newHost(t)
	payload := payloadDir(t, kataStatic("v1"))
	opts := []Option{
		WithDebug(),
		WithAllowedHypervisorAnnotations("qemu", "default_vcpus", "enable_iommu"),
		WithAgentHTTPSProxy("http://proxy.example:3128"),
		WithAgentNoProxy("localhost,.svc"),
		WithKernelParams("cgroup_no_v1=all"),
	}
	_, err := Install(context.Background(), host, payload, opts...)
	assert.NilError(t, err)
	for _, shim := range []string{"qemu", "clh"} {
		dir := filepath.Join(host, "opt/kata/share/defaults/kata-containers/runtimes", shim, "config.d")
		entries, err := os.ReadDir(dir)
		assert.NilError(t, err)
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			assert.NilError(t, err)
			golden.Assert(t, string(data), shim+"-"+strings.TrimSuffix(e.Name(), ".toml")+".dropin.golden")
		}
	}
	// Same settings again: nothing to do.
	rep, err := Install(context.Background(), host, payload, opts...)
	assert.NilError(t, err)
	assert.Check(t, !rep.HasChanges(), rep.String())
	// The same settings in one WithSettings: the same drop-ins.
	rep, err = Install(context.Background(), host, payload, WithSettings(Settings{
		Debug:           true,
		Annotations:     map[string][]string{"qemu": {"default_vcpus", "enable_iommu"}},
		AgentHTTPSProxy: "http://proxy.example:3128",
		AgentNoProxy:    "localhost,.svc",
		KernelParams:    []string{"cgroup_no_v1=all"},
	}))
	assert.NilError(t, err)
	assert.Check(t, !rep.HasChanges(), rep.String())

	// Settings unset: their drop-ins go, the rest stays.
	rep, err = Install(context.Background(), host, payload)
	assert.NilError(t, err)
	golden.Assert(t, rep.String(), "settings-unset.install.golden")
	assert.Assert(t, fs.Equal(host, expectedStatic(t, "v1")))
}

func TestSettingsRefusedForKata1(t *testing.T) {
	host := newHost(t)
	payload := t.TempDir()
	kata1().writeDir(t, payload, "")
	_, err := Install(context.Background(), host, payload, WithDebug())
	assert.Check(t, errors.Is(err, ErrUnsupportedSetting), "%v", err)
}

func TestKata1Layout(t *testing.T) {
	host := newHost(t)
	payload := t.TempDir()
	spec := kata1()
	spec.writeDir(t, payload, "")
	rep, err := Install(context.Background(), host, payload)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(rep.Layout, LayoutKata1))
	golden.Assert(t, listing(snapshot(t, filepath.Join(host, "opt/kata"))), "kata1.tree.golden")

	// The same tree as a tarball, with its files at the archive root.
	tb := spec.tarball(t, "gz")
	host2 := newHost(t)
	_, err = Install(context.Background(), host2, tb)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(descs(snapshot(t, host2)), descs(snapshot(t, host))))
}

func TestTarballFormats(t *testing.T) {
	spec := kataStatic("v1")
	for _, comp := range []string{"", "gz", "xz", "zst"} {
		t.Run("tar."+comp, func(t *testing.T) {
			host := newHost(t)
			_, err := Install(context.Background(), host, spec.tarball(t, comp))
			assert.NilError(t, err)
			assert.Assert(t, fs.Equal(host, expectedStatic(t, "v1")))
		})
	}
}

func TestPlanWritesNothing(t *testing.T) {
	host := newHost(t)
	payload := payloadDir(t, kataStatic("v1"))
	for _, p := range []string{payload, kataStatic("v1").tarball(t, "zst")} {
		rep, err := Plan(context.Background(), host, p)
		assert.NilError(t, err)
		golden.Assert(t, rep.String(), "fresh.install.golden")
		entries, err := os.ReadDir(host)
		assert.NilError(t, err)
		assert.Check(t, is.Len(entries, 0))
	}
	_, err := Install(context.Background(), host, payload)
	assert.NilError(t, err)
	before := snapshot(t, host)
	rep, err := Plan(context.Background(), host, payloadDir(t, kataStatic("v2")))
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(rep.Changed, []string{"/opt/kata/bin/containerd-shim-kata-v2"}))
	assert.Check(t, is.DeepEqual(snapshot(t, host), before))
}
