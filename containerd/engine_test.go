package containerd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/golden"

	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// configs holds the real-world containerd configs other packages' tests
// read too; testdata/README.md says where each comes from.
const configs = "../testdata/containerd/"

// hostCase is a host tree to install onto.
type hostCase struct {
	name    string
	variant runtime.Variant
	version string
	mode    runtime.Mode
	shims   []string
	// files maps host paths to files, relative to this directory (or,
	// with a "=" prefix, literal content).
	files map[string]string
	dirs  []string
}

func goldenCases() []hostCase {
	const etc = "/etc/containerd/config.toml"
	return []hostCase{
		{name: "containerd-1.6-default", variant: runtime.VariantContainerd, version: "1.6.20",
			files: map[string]string{etc: configs + "containerd-1.6-default.toml"}},
		{name: "containerd-1.6-custom", variant: runtime.VariantContainerd, version: "1.6.20",
			files: map[string]string{etc: configs + "containerd-1.6-custom.toml"}},
		{name: "containerd-1.6-crlf-noeol", variant: runtime.VariantContainerd, version: "1.6.20",
			files: map[string]string{etc: configs + "containerd-1.6-crlf-noeol.toml"}},
		{name: "containerd-1.6-v1", variant: runtime.VariantContainerd, version: "1.6.20",
			files: map[string]string{etc: configs + "containerd-1.6-v1.toml"}},
		{name: "containerd-1.6-only-version", variant: runtime.VariantContainerd, version: "1.6.20",
			files: map[string]string{etc: configs + "containerd-1.6-only-version.toml"}},
		{name: "containerd-1.6-untrusted", variant: runtime.VariantContainerd, version: "1.6.20", mode: runtime.ModeUntrusted,
			files: map[string]string{etc: configs + "containerd-1.6-custom.toml"}},
		{name: "containerd-1.6-no-config", variant: runtime.VariantContainerd, version: "1.6.20", dirs: []string{"/etc"}},
		{name: "containerd-1.7-imports-conf-d", variant: runtime.VariantContainerd, version: "1.7.22",
			files: map[string]string{etc: "=version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
				"/etc/containerd/conf.d/10-cri.toml": configs + "containerd-1.6-custom.toml"}},
		{name: "containerd-2.2-default", variant: runtime.VariantContainerd, version: "2.2.9",
			files: map[string]string{etc: configs + "containerd-2.2-default.toml"}},
		{name: "containerd-2.2-custom", variant: runtime.VariantContainerd, version: "2.2.9",
			files: map[string]string{etc: configs + "containerd-2-custom.toml"}},
		{name: "containerd-2.2-conf-d", variant: runtime.VariantContainerd, version: "2.2.9",
			files: map[string]string{etc: configs + "containerd-2-confd.toml"}},
		{name: "containerd-2.2-imports-multiline", variant: runtime.VariantContainerd, version: "2.2.9",
			files: map[string]string{etc: configs + "containerd-2-imports-multiline.toml"}},
		{name: "containerd-2.2-v2-config", variant: runtime.VariantContainerd, version: "2.2.9",
			files: map[string]string{etc: configs + "containerd-1.6-custom.toml"}},
		{name: "containerd-2.2-no-config", variant: runtime.VariantContainerd, version: "2.2.9", dirs: []string{"/etc"}},
		{name: "containerd-2.0-custom", variant: runtime.VariantContainerd, version: "2.0.5",
			files: map[string]string{etc: configs + "containerd-2-custom.toml"}},
		{name: "containerd-2.3-v4", variant: runtime.VariantContainerd, version: "2.3.7",
			files: map[string]string{etc: "=version = 4\n\n[plugins.'io.containerd.server.v1.grpc']\n  address = \"/run/containerd/containerd.sock\"\n"}},
		{name: "containerd-2.2-snapshotter", variant: runtime.VariantContainerd, version: "2.2.9", shims: []string{"qemu", "fc"},
			files: map[string]string{etc: configs + "containerd-2-custom.toml"}},
		{name: "containerd-1.7-snapshotter", variant: runtime.VariantContainerd, version: "1.7.22", shims: []string{"qemu", "fc"},
			files: map[string]string{etc: configs + "containerd-1.6-custom.toml"}},
		{name: "containerd-2.0-snapshotter", variant: runtime.VariantContainerd, version: "2.0.5", shims: []string{"qemu", "fc"},
			files: map[string]string{etc: configs + "containerd-2-custom.toml"}},
		{name: "k3s-v2-containerd-1.7", variant: runtime.VariantK3s, version: "1.7.22-k3s1",
			files: map[string]string{"/var/lib/rancher/k3s/agent/etc/containerd/config.toml": configs + "k3s-v2.toml"}},
		{name: "k3s-agent-v3-containerd-2.1", variant: runtime.VariantK3sAgent, version: "2.1.4-k3s1",
			files: map[string]string{"/var/lib/rancher/k3s/agent/etc/containerd/config.toml": configs + "k3s-v3.toml"}},
		{name: "rke2-server-v3-containerd-2.1", variant: runtime.VariantRKE2Server, version: "2.1.4-k3s1",
			files: map[string]string{"/var/lib/rancher/rke2/agent/etc/containerd/config.toml": configs + "rke2-v3.toml"}},
		{name: "k0s-containerd-1.7", variant: runtime.VariantK0s, version: "1.7.27", dirs: []string{"/etc/k0s/containerd.d"}},
		{name: "microk8s", variant: runtime.VariantMicroK8s, version: "1.6.28",
			files: map[string]string{"/var/snap/microk8s/current/args/containerd-template.toml": configs + "microk8s-template.toml"}},
	}
}

// makeHost builds the case's host tree in a temporary directory.
func makeHost(t *testing.T, c hostCase) string {
	t.Helper()
	files := map[string][]byte{}
	for p, src := range c.files {
		if strings.HasPrefix(src, "=") {
			files[p] = []byte(src[1:])
			continue
		}
		data, err := os.ReadFile(filepath.FromSlash(src))
		assert.NilError(t, err)
		files[p] = data
	}
	// Every node has /usr/local/bin (containerd 1.6 finds shim links
	// there); TestShimLinkDirMissing covers a host root without it.
	return hosttest.Write(t, append([]string{"/usr/local/bin"}, c.dirs...), files)
}

func newEngine(t testing.TB, host string, c hostCase) *Engine {
	t.Helper()
	v, err := runtime.ParseVersion(c.version)
	assert.NilError(t, err)
	e, err := New(host, c.variant, v)
	assert.NilError(t, err)
	return e
}

func specFor(t testing.TB, c hostCase) runtime.Spec {
	t.Helper()
	shims := c.shims
	var opts []runtime.HandlerOption
	if shims == nil {
		shims = []string{"qemu", "clh"}
	}
	for _, s := range shims {
		if s == "fc" {
			opts = append(opts, runtime.WithSnapshotter("fc", "devmapper"))
		}
	}
	hs, err := runtime.Handlers(shims, opts...)
	assert.NilError(t, err)
	mode := c.mode
	if mode == "" {
		mode = runtime.ModeRuntimeClass
	}
	return runtime.Spec{Handlers: hs, Mode: mode}
}

func TestInstallGolden(t *testing.T) {
	ctx := context.Background()
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			host := makeHost(t, c)
			before := hosttest.Snapshot(t, host)
			e := newEngine(t, host, c)
			spec := specFor(t, c)

			plan, err := e.PlanInstall(context.Background(), spec)
			assert.NilError(t, err)
			assert.Check(t, !plan.Empty())
			golden.Assert(t, plan.Diff(), c.name+".install.golden")
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before), "planning wrote to the host")

			assert.NilError(t, e.Apply(ctx, plan))
			for _, ch := range plan.Changes {
				if ch.Op == runtime.Create || ch.Op == runtime.Modify {
					_, err := parseDocument(context.Background(), ch.Path, ch.After, "kata-deploy")
					assert.NilError(t, err, "install wrote a file that does not parse")
				}
			}

			again, err := e.PlanInstall(context.Background(), spec)
			assert.NilError(t, err)
			assert.Check(t, again.Empty(), "second install is not a no-op:\n%s", again.Diff())

			undo, err := e.PlanUninstall(context.Background())
			assert.NilError(t, err)
			golden.Assert(t, undo.Diff(), c.name+".uninstall.golden")
			assert.NilError(t, e.Apply(ctx, undo))
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before), "uninstall did not restore the host exactly")
		})
	}
}

// containerd 2.x reads a handler's image snapshotter only from a version 3
// config (checked with the real 2.2.9: migrating a version 2 file does not
// derive it), so a snapshotter on a version 2 config is refused.
func TestSnapshotterNeedsVersion3OnContainerd2(t *testing.T) {
	hc := hostCase{variant: runtime.VariantContainerd, version: "2.2.9", shims: []string{"qemu", "fc"},
		files: map[string]string{"/etc/containerd/config.toml": configs + "containerd-1.6-custom.toml"}}
	host := makeHost(t, hc)
	before := hosttest.Snapshot(t, host)
	_, err := newEngine(t, host, hc).PlanInstall(context.Background(), specFor(t, hc))
	var ce *runtime.ConfigError
	assert.Assert(t, errors.As(err, &ce), "want a *runtime.ConfigError, got %T: %v", err, err)
	assert.Check(t, is.Equal(ce.Path, "/etc/containerd/config.toml"))
	assert.Check(t, is.Equal(ce.Key, "version"))
	assert.Check(t, is.ErrorContains(err, "only from a version 3 config"))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
}

func TestBadConfigs(t *testing.T) {
	cases := []struct {
		file, version string
		mode          runtime.Mode
		line          int
		key, msg      string
	}{
		{file: "malformed.toml", version: "1.6.20", line: 2, msg: "expected ']'"},
		{file: "version-string.toml", version: "1.6.20", line: 1, key: "version", msg: "want an integer"},
		{file: "version-unknown.toml", version: "2.2.9", line: 1, key: "version", msg: "unknown containerd config version 7"},
		{file: "inline-runtimes.toml", version: "1.6.20", line: 3, key: `plugins."io.containerd.grpc.v1.cri".containerd.runtimes`, msg: "inline table"},
		{file: "duplicate-key.toml", version: "1.6.20", line: 3, key: "root", msg: "already"},
		{file: "kata-exists.toml", version: "1.6.20", line: 2, key: `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata`, msg: "already defined"},
		{file: "imports-string.toml", version: "2.2.9", line: 2, key: "imports", msg: "array"},
		{file: "version3.toml", version: "1.6.20", key: "version", msg: "containerd 1.6.20 reads config versions 1 to 2"},
		{file: "version3.toml", version: "2.2.9", mode: runtime.ModeUntrusted, msg: "use --mode=runtimeclass"},
	}
	for _, c := range cases {
		t.Run(c.file+"-"+c.version, func(t *testing.T) {
			hc := hostCase{variant: runtime.VariantContainerd, version: c.version, mode: c.mode,
				files: map[string]string{"/etc/containerd/config.toml": "testdata/bad/" + c.file}}
			host := makeHost(t, hc)
			before := hosttest.Snapshot(t, host)
			e := newEngine(t, host, hc)
			_, err := e.PlanInstall(context.Background(), specFor(t, hc))
			assert.ErrorContains(t, err, c.msg)
			var ce *runtime.ConfigError
			if c.mode == "" {
				assert.Assert(t, errors.As(err, &ce), "want a *runtime.ConfigError, got %T: %v", err, err)
				assert.Check(t, is.Equal(ce.Path, "/etc/containerd/config.toml"))
				if c.line > 0 {
					assert.Check(t, is.Equal(ce.Line, c.line))
				}
				assert.Check(t, is.Equal(ce.Key, c.key))
			}
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
		})
	}
}
