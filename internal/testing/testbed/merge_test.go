package testbed

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// effective is what the imports-merge cases look at in a dumped containerd config.
type effective struct {
	Sandbox       string // sandbox_image (v2) / pinned_images.sandbox (v3)
	Runc          bool   // a runtimes.runc table exists
	SystemdCgroup bool   // runtimes.runc.options.SystemdCgroup
	Registry      string // registry.config_path
	Kata          bool   // a runtimes.kata table exists
}

const (
	userSandbox  = "registry.example.com/pause:3.9"
	userRegistry = "/etc/containerd/certs.d"
	def16Sandbox = "registry.k8s.io/pause:3.6"
	def22Sandbox = "registry.k8s.io/pause:3.10.1"
)

// TestContainerdImportsMerge records how the real containerd 1.6.20 and 2.2.9 merge
// imported files (testdata/containerd-imports, tabled in docs/testbed.md).
func TestContainerdImportsMerge(t *testing.T) {
	Require(t)
	kept := effective{Sandbox: userSandbox, Runc: true, SystemdCgroup: true, Registry: userRegistry, Kata: true}
	cases := []struct {
		name   string
		c16    *effective // nil: containerd 1.6 refuses the config
		c22    effective
		reason string
	}{
		{name: "v2-import", reason: "1.6 replaces the whole CRI plugin table with the import's; 2.2 merges deeply",
			c16: &effective{Sandbox: def16Sandbox, Kata: true}, c22: kept},
		{name: "v2-import-pluginkey", reason: "same with a plugin-level key in the import",
			c16: &effective{Sandbox: def16Sandbox, Kata: true}, c22: kept},
		{name: "v2-both", reason: "one file naming runc and kata keeps both",
			c16: &kept, c22: kept},
		{name: "v2-kataonly", reason: "1.6: naming any runtime replaces the default runtimes map (runc lost)",
			c16: &effective{Sandbox: def16Sandbox, Kata: true},
			c22: effective{Sandbox: def22Sandbox, Runc: true, Kata: true}},
		{name: "v3-import", reason: "1.6 ignores version-3 plugin IDs",
			c16: &effective{Sandbox: def16Sandbox, Runc: true}, c22: kept},
		{name: "v3-both", c16: &effective{Sandbox: def16Sandbox, Runc: true}, c22: kept},
		{name: "v3-kataonly", reason: "2.2 keeps its default runc",
			c16: &effective{Sandbox: def16Sandbox, Runc: true},
			c22: effective{Sandbox: def22Sandbox, Runc: true, Kata: true}},
		{name: "v3-import-v2file", reason: "2.2 migrates only version 0/1 imports: a version-2 import into a version-3 config is dropped",
			c16: &effective{Sandbox: def16Sandbox, Kata: true},
			c22: effective{Sandbox: userSandbox, Runc: true, SystemdCgroup: true, Registry: userRegistry}},
		{name: "v3-noimports-dropin", reason: "2.2 loads conf.d only when the main config says imports (dump shows the pattern anyway)",
			c16: &effective{Sandbox: def16Sandbox, Runc: true},
			c22: effective{Sandbox: userSandbox, Runc: true, SystemdCgroup: true, Registry: userRegistry}},
		{name: "noconfig-dropin", reason: "2.2 without config.toml ignores conf.d; 1.6 errors on a missing --config file",
			c16: nil, c22: effective{Sandbox: def22Sandbox, Runc: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join("testdata", "containerd-imports", tc.name)
			for _, f := range []Flavour{Containerd16, Containerd2} {
				want := &tc.c22
				if f == Containerd16 {
					want = tc.c16
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				out, err := ContainerdConfigDump(ctx, f, root, "/etc/containerd/config.toml")
				cancel()
				if want == nil {
					if err == nil {
						t.Errorf("%s: config dump succeeded, want an error", f)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				got, err := parseEffective(f, out)
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				if got != *want {
					t.Errorf("%s (%s):\n got %+v\nwant %+v", f, tc.reason, got, *want)
				}
			}
		})
	}
}

func parseEffective(f Flavour, dump []byte) (effective, error) {
	var cfg map[string]any
	if err := toml.Unmarshal(dump, &cfg); err != nil {
		return effective{}, err
	}
	var e effective
	var runtimes map[string]any
	if f == Containerd16 {
		cri := dig(cfg, "plugins", "io.containerd.grpc.v1.cri")
		e.Sandbox, _ = cri["sandbox_image"].(string)
		e.Registry, _ = dig(cri, "registry")["config_path"].(string)
		runtimes = dig(cri, "containerd", "runtimes")
	} else {
		images := dig(cfg, "plugins", "io.containerd.cri.v1.images")
		e.Sandbox, _ = dig(images, "pinned_images")["sandbox"].(string)
		e.Registry, _ = dig(images, "registry")["config_path"].(string)
		runtimes = dig(cfg, "plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes")
	}
	_, e.Runc = runtimes["runc"]
	_, e.Kata = runtimes["kata"]
	e.SystemdCgroup, _ = dig(runtimes, "runc", "options")["SystemdCgroup"].(bool)
	return e, nil
}

// dig walks nested TOML tables; a missing one yields an empty table.
func dig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, _ := m[k].(map[string]any)
		if next == nil {
			return map[string]any{}
		}
		m = next
	}
	return m
}

// TestCRIODropins: CRI-O applies drop-ins per runtime table; a Kata drop-in adds its
// handler and keeps the handlers of earlier drop-ins.
func TestCRIODropins(t *testing.T) {
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := CRIOConfig(ctx, filepath.Join("testdata", "crio-dropins", "kata"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := toml.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("parse crio config: %v", err)
	}
	runtimes := dig(cfg, "crio", "runtime", "runtimes")
	for _, h := range []string{"crun", "runc", "kata-qemu"} {
		if _, ok := runtimes[h]; !ok {
			t.Errorf("handler %s missing from effective config; have %v", h, keysAny(runtimes))
		}
	}
	if got, _ := dig(runtimes, "kata-qemu")["runtime_type"].(string); got != "vm" {
		t.Errorf("kata-qemu runtime_type %q, want vm", got)
	}
	// crio config prints values equal to its defaults as comments: crun is the default.
	if got, ok := dig(cfg, "crio", "runtime")["default_runtime"].(string); ok || !strings.Contains(string(out), `# default_runtime = "crun"`) {
		t.Errorf("default_runtime = %q set; want it left at the default crun", got)
	}
	if !strings.Contains(string(out), "[crio.runtime.runtimes.kata-qemu]") {
		t.Error("no [crio.runtime.runtimes.kata-qemu] table in output")
	}
}

func keysAny(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return k
}
