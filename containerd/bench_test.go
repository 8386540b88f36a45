package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// bigConfig returns a realistic config of about 100 KB: the containerd 1.6
// defaults followed by many registry mirror tables, with comments.
func bigConfig(b *testing.B) []byte {
	b.Helper()
	base, err := os.ReadFile(configs + "containerd-1.6-default.toml")
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	sb.Write(base)
	for i := 0; sb.Len() < 100<<10; i++ {
		fmt.Fprintf(&sb, "\n# mirror %d, managed by the platform team\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"registry-%d.example.com\"]\n  endpoint = [\"https://mirror-%d.example.com\", \"https://registry-%d.example.com\"]\n", i, i, i, i)
	}
	return []byte(sb.String())
}

func benchHost(b *testing.B, config []byte) string {
	host := b.TempDir()
	p := filepath.Join(host, "etc/containerd/config.toml")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, config, 0o644); err != nil {
		b.Fatal(err)
	}
	return host
}

func benchSpec(b *testing.B) runtime.Spec {
	hs, err := runtime.Handlers([]string{"qemu", "clh", "fc"})
	if err != nil {
		b.Fatal(err)
	}
	return runtime.Spec{Handlers: hs, Mode: runtime.ModeRuntimeClass}
}

// BenchmarkPlanInstall100KB measures planning (parse, edit, verify) on a
// 100 KB config, for each edit strategy.
func BenchmarkPlanInstall100KB(b *testing.B) {
	config := bigConfig(b)
	for _, v := range []runtime.Version{{Major: 1, Minor: 6, Patch: 20}, {Major: 2, Minor: 2, Patch: 9}} {
		b.Run("containerd-"+v.String(), func(b *testing.B) {
			e, err := New(benchHost(b, config), runtime.VariantContainerd, v)
			if err != nil {
				b.Fatal(err)
			}
			spec := benchSpec(b)
			b.SetBytes(int64(len(config)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.PlanInstall(context.Background(), spec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPlanInstallDefault measures planning on containerd 1.6's own
// default config (6.8 KB), the size most nodes have.
func BenchmarkPlanInstallDefault(b *testing.B) {
	config, err := os.ReadFile(configs + "containerd-1.6-default.toml")
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(benchHost(b, config), runtime.VariantContainerd, runtime.Version{Major: 1, Minor: 6, Patch: 20})
	if err != nil {
		b.Fatal(err)
	}
	spec := benchSpec(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.PlanInstall(context.Background(), spec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInstallUninstall100KB measures a whole install and uninstall
// (plan, apply with fsyncs, plan, apply) on a 100 KB config.
func BenchmarkInstallUninstall100KB(b *testing.B) {
	config := bigConfig(b)
	e, err := New(benchHost(b, config), runtime.VariantContainerd, runtime.Version{Major: 1, Minor: 6, Patch: 20})
	if err != nil {
		b.Fatal(err)
	}
	spec := benchSpec(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, err := e.PlanInstall(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Apply(ctx, p); err != nil {
			b.Fatal(err)
		}
		u, err := e.PlanUninstall(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Apply(ctx, u); err != nil {
			b.Fatal(err)
		}
	}
}
