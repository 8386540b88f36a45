package containerd

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// A runtime someone else named as one of the handlers kata-deploy would
// register is refused wherever containerd reads it from: the main config
// (version 2 or 3 keys), a file it imports by name, by glob or by a path
// relative to its own directory, or a file such a file imports. On
// containerd 2.1 and later the drop-in used to replace it without a word.
func TestRefusesRuntimeDefinedInEffectiveConfig(t *testing.T) {
	const (
		etc     = "/etc/containerd/config.toml"
		v3kata  = "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata]\n  runtime_type = \"io.containerd.mine.v2\"\n"
		v2qemu  = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata-qemu]\n  runtime_type = \"io.containerd.mine.v2\"\n"
		v3clh   = "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.kata-clh]\n  runtime_type = \"io.containerd.mine.v2\"\n"
		k3sConf = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
	)
	cases := []struct {
		name    string
		variant runtime.Variant
		version string
		suffix  string
		files   map[string]string
		path    string // the file the error must name
		key     string
		line    int // of the runtime in path; 0 means 3 ("version = N", a blank line, the runtime)
	}{
		{name: "v3 keys in config.toml with a conf.d glob", files: map[string]string{
			etc: "=version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n\n" + v3kata},
			path: etc, key: `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata`, line: 4},
		{name: "v3 keys in config.toml without imports", files: map[string]string{
			etc: "=version = 3\n\n" + v3kata},
			path: etc, key: `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata`},
		{name: "v2 keys in a version 2 config.toml", files: map[string]string{
			etc: "=version = 2\n\n" + v2qemu},
			path: etc, key: `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-qemu`},
		{name: "v2 keys in a version 3 config.toml", files: map[string]string{
			etc: "=version = 3\n\n" + v2qemu},
			path: etc, key: `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-qemu`},
		{name: "a file the 2.2 default config's glob imports", files: map[string]string{
			etc:                                   configs + "containerd-2.2-default.toml",
			"/etc/containerd/conf.d/50-user.toml": "=version = 3\n\n" + v3clh},
			path: "/etc/containerd/conf.d/50-user.toml", key: `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-clh`},
		{name: "a file sorting after the engine's drop-in", files: map[string]string{
			etc:                                   configs + "containerd-2.2-default.toml",
			"/etc/containerd/conf.d/zz-user.toml": "=version = 3\n\n" + v3kata},
			path: "/etc/containerd/conf.d/zz-user.toml", key: `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata`},
		{name: "a file imported by a relative path", files: map[string]string{
			etc:                                  "=version = 3\nimports = [\"user/runtimes.toml\"]\n",
			"/etc/containerd/user/runtimes.toml": "=version = 3\n\n" + v3kata},
			path: "/etc/containerd/user/runtimes.toml", key: `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata`},
		{name: "a relative glob", files: map[string]string{
			etc:                           "=version = 3\nimports = [\"more/*.toml\"]\n",
			"/etc/containerd/more/a.toml": "=version = 3\n\n" + v3clh},
			path: "/etc/containerd/more/a.toml", key: `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-clh`},
		{name: "a file an imported file imports", files: map[string]string{
			etc:                      "=version = 3\nimports = [\"/etc/containerd/a.toml\"]\n",
			"/etc/containerd/a.toml": "=version = 3\nimports = [\"b.toml\"]\n",
			"/etc/containerd/b.toml": "=version = 3\n\n" + v3kata},
			path: "/etc/containerd/b.toml", key: `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata`},
		{name: "a suffixed install's handler", suffix: "canary", files: map[string]string{
			etc: "=version = 3\n\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata-qemu-canary]\n  runtime_type = \"x\"\n"},
			path: etc, key: `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-qemu-canary`},
		{name: "an imported file on containerd 1.7", version: "1.7.22", files: map[string]string{
			etc:                                   "=version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
			"/etc/containerd/conf.d/10-user.toml": "=version = 2\n\n" + v2qemu},
			path: "/etc/containerd/conf.d/10-user.toml", key: `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-qemu`},
		{name: "k3s drop-in directory", variant: runtime.VariantK3sAgent, version: "2.1.4-k3s1", files: map[string]string{
			k3sConf: configs + "k3s-v3.toml",
			"/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.d/user.toml": "=version = 3\n\n" + v3kata},
			path: "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.d/user.toml", key: `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata`},
		{name: "k0s drop-in directory", variant: runtime.VariantK0s, version: "2.1.4", files: map[string]string{
			"/etc/k0s/containerd.d/user.toml": "=version = 3\n\n" + v3kata},
			path: "/etc/k0s/containerd.d/user.toml", key: `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hc := hostCase{variant: c.variant, version: c.version, files: c.files}
			if hc.variant == "" {
				hc.variant = runtime.VariantContainerd
			}
			if hc.version == "" {
				hc.version = "2.2.9"
			}
			host := makeHost(t, hc)
			before := hosttest.Snapshot(t, host)
			spec := specFor(t, hc)
			if c.suffix != "" {
				hs, err := runtime.Handlers([]string{"qemu"}, runtime.WithSuffix(c.suffix))
				assert.NilError(t, err)
				spec.Handlers = hs
			}
			_, err := newEngine(t, host, hc).PlanInstall(context.Background(), spec)
			var ce *runtime.ConfigError
			assert.Assert(t, errors.As(err, &ce), "want a *runtime.ConfigError, got %T: %v", err, err)
			assert.Check(t, is.Equal(ce.Path, c.path))
			assert.Check(t, is.Equal(ce.Key, c.key))
			line := c.line
			if line == 0 {
				line = 3
			}
			assert.Check(t, is.Equal(ce.Line, line))
			assert.Check(t, is.ErrorContains(err, fmt.Sprintf("%s:%d: key %s: is already defined", c.path, line, c.key)))
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
		})
	}
}

// The engine's own drop-in, and a runtime of another name, are not a
// conflict: a re-run plans nothing, and a runtime beside Kata's stays.
func TestEffectiveConfigAllowsOwnDropIn(t *testing.T) {
	ctx := context.Background()
	hc := hostCase{variant: runtime.VariantContainerd, version: "2.2.9", files: map[string]string{
		"/etc/containerd/config.toml":        configs + "containerd-2.2-default.toml",
		"/etc/containerd/conf.d/gvisor.toml": "=version = 3\n\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc]\n  runtime_type = 'io.containerd.runsc.v1'\n"}}
	host := makeHost(t, hc)
	e := newEngine(t, host, hc)
	plan, err := e.PlanInstall(ctx, specFor(t, hc))
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, plan))
	again, err := e.PlanInstall(ctx, specFor(t, hc))
	assert.NilError(t, err)
	assert.Check(t, again.Empty(), again.Diff())
}
