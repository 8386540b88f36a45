package katadeploy_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"

	"github.com/kata-deploy/kata-deploy/artifacts"
	"github.com/kata-deploy/kata-deploy/containerd"
	"github.com/kata-deploy/kata-deploy/crio"
	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
	"github.com/kata-deploy/kata-deploy/runtime/cri"
	"github.com/kata-deploy/kata-deploy/systemd"
)

// install is another installer's whole install, with its rollback, written
// with the public packages only, as README.md shows it (TestReadmeSnippet
// keeps the two the same). reported is the runtime the Node reports.
func install(ctx context.Context, host, payload, reported string, shims []string) error {
	rt, err := kataruntime.ParseRuntime(reported) // containerd://2.2.9 or cri-o://1.34.0
	if err != nil {
		return err
	}
	hostFS, err := artifacts.HostFS(host)
	if err != nil {
		return err
	}
	variant, _, err := kataruntime.DetectVariant(hostFS, rt.Kind) // containerd, k3s, crio, ...
	if err != nil {
		return err
	}
	inst := kataruntime.Installation{Prefix: "/opt"} // where Kata goes, what it is called
	handlers, err := inst.Handlers(shims)            // kata, kata-qemu, ...
	if err != nil {
		return err
	}
	spec := kataruntime.Spec{Handlers: handlers, Mode: kataruntime.ModeRuntimeClass}
	var engine interface {
		kataruntime.ConfigEngine
		ConfigWritten() (time.Time, error)
	}
	if variant.Kind() == kataruntime.CRIO {
		engine, err = crio.New(host, rt.Version, crio.WithName(inst.EngineName()))
	} else {
		engine, err = containerd.New(host, variant, rt.Version, containerd.WithName(inst.EngineName()))
	}
	if err != nil {
		return err
	}
	plan, err := engine.PlanInstall(ctx, spec) // writes nothing: a config it cannot edit stops here
	if err != nil {
		return err
	}
	fmt.Println(plan.Paths()) // or review plan.Diff()
	// The payload refuses handlers it would not run before it writes.
	opts := []artifacts.Option{artifacts.WithInstallation(inst), artifacts.WithHandlers(handlers)}
	rep, err := artifacts.Install(ctx, host, payload, opts...)
	if err != nil {
		return err
	}
	var sd *systemd.Client
	undo := func(cause error) error { // config back, runtime restarted on it, payload gone if ours
		ctx, errs := context.WithoutCancel(ctx), []error{cause}
		if back, err := engine.PlanUninstall(ctx); err != nil {
			errs = append(errs, err)
		} else if err := engine.Apply(ctx, back); err != nil {
			errs = append(errs, err)
		} else if sd != nil {
			_, err := sd.Restart(ctx, variant.RuntimeUnit())
			errs = append(errs, err)
		}
		if !rep.Previous {
			_, err := artifacts.Uninstall(ctx, host, opts...)
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	if err := engine.Apply(ctx, plan); err != nil {
		return undo(err)
	}
	written, err := engine.ConfigWritten()
	if err != nil {
		return undo(err)
	}
	if unit := variant.RuntimeUnit(); unit != "" { // k0s has none: it reloads its drop-ins
		if sd, err = systemd.Dial(ctx, host); err != nil {
			return undo(err)
		}
		defer sd.Close()
		// Restart only if the runtime has not started since its config changed.
		if _, _, err := sd.RestartIfNeeded(ctx, unit, written); err != nil {
			return undo(err)
		}
	}
	if err := cri.Verify(ctx, host, variant, spec); err != nil { // the runtime itself serves them all
		return undo(err)
	}
	return nil
}

// Another installer's install on a host root with containerd 2.2 and a
// Kata payload, but no systemd to restart containerd: the install stops
// there and rolls back, and the host is as it was. (On a real node it
// restarts containerd and verifies; TestAnotherInstallerOnRealNodes.)
func Example_anotherInstaller() {
	host, payload := exampleHost()
	defer os.RemoveAll(host)
	defer os.RemoveAll(payload)
	before := snapshot(host)
	err := install(context.Background(), host, payload, "containerd://2.2.9", []string{"qemu", "clh"})
	fmt.Println("no systemd, rolled back:", strings.Contains(fmt.Sprint(err), "systemd: connect to"))
	fmt.Println("host as it was:", maps.Equal(before, snapshot(host)))
	// Output:
	// [/etc/containerd/kata-deploy.toml /etc/containerd/config.toml]
	// no systemd, rolled back: true
	// host as it was: true
}

// snapshot maps every path under root to its type, mode and content.
func snapshot(root string) map[string]string {
	out := map[string]string{}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		content := ""
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			content = string(b)
		}
		out[p] = fi.Mode().String() + " " + content
		return nil
	})
	return out
}

// exampleHost makes a host root running containerd 2.2 with a config of
// its own, and a Kata payload with the qemu and clh shims.
func exampleHost() (host, payload string) {
	host, _ = os.MkdirTemp("", "host")
	payload, _ = os.MkdirTemp("", "payload")
	for p, content := range map[string]string{
		filepath.Join(host, "lib/systemd/system/containerd.service"):                              "",
		filepath.Join(host, "etc/containerd/config.toml"):                                         "version = 3\n",
		filepath.Join(payload, "opt/kata/bin/containerd-shim-kata-v2"):                            "shim",
		filepath.Join(payload, "opt/kata/share/defaults/kata-containers/configuration-qemu.toml"): "[hypervisor.qemu]\n",
		filepath.Join(payload, "opt/kata/share/defaults/kata-containers/configuration-clh.toml"):  "[hypervisor.clh]\n",
	} {
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		_ = os.WriteFile(p, []byte(content), 0o755)
	}
	return host, payload
}

// TestReadmeSnippet keeps README's "Using the packages from another
// installer" code the same as install above, which compiles and runs.
func TestReadmeSnippet(t *testing.T) {
	src, err := os.ReadFile("example_test.go")
	assert.NilError(t, err)
	start := strings.Index(string(src), "func install(")
	end := strings.Index(string(src)[start:], "\n}\n")
	assert.Assert(t, start >= 0 && end >= 0)
	want := string(src)[start : start+end+3]

	readme, err := os.ReadFile("README.md")
	assert.NilError(t, err)
	section := strings.SplitN(string(readme), "## Using the packages from another installer", 2)
	assert.Assert(t, len(section) == 2)
	_, block, ok := strings.Cut(section[1], "```go\n")
	assert.Assert(t, ok, "no go block in the section")
	block, _, _ = strings.Cut(block, "```\n")
	assert.Equal(t, block, want, "README.md's snippet differs from install in example_test.go")
}
