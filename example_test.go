package katadeploy_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/kata-deploy/kata-deploy/artifacts"
	"github.com/kata-deploy/kata-deploy/containerd"
	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
)

// install is what another installer writes with the public packages, as
// README.md shows it (TestReadmeSnippet keeps the two the same).
func install(ctx context.Context, host, payload, reported string) error {
	rt, err := kataruntime.ParseRuntime(reported) // from the Node: containerd://2.2.9
	if err != nil {
		return err
	}
	hostFS, err := artifacts.HostFS(host)
	if err != nil {
		return err
	}
	variant, _, err := kataruntime.DetectVariant(hostFS, rt.Kind) // containerd, k3s, ...; CRI-O: crio.New
	if err != nil {
		return err
	}
	// The prefix goes to artifacts only; the handlers take the payload's paths.
	opts := []artifacts.Option{artifacts.WithPrefix("/opt")}
	preview, err := artifacts.Plan(ctx, host, payload, opts...) // writes nothing
	if err != nil {
		return err
	}
	handlers, err := preview.Handlers([]string{"qemu", "clh"}) // kata, kata-qemu, kata-clh
	if err != nil {
		return err
	}
	engine, err := containerd.New(host, variant, rt.Version) // a second install: containerd.WithName
	if err != nil {
		return err
	}
	plan, err := engine.PlanInstall(ctx, kataruntime.Spec{Handlers: handlers, Mode: kataruntime.ModeRuntimeClass})
	if err != nil {
		return err // refused before anything was written
	}
	fmt.Println(plan.Paths()) // or review plan.Diff()
	if _, err := artifacts.Install(ctx, host, payload, opts...); err != nil {
		return err
	}
	if err := engine.Apply(ctx, plan); err != nil {
		_, undo := artifacts.Uninstall(ctx, host, opts...) // if no payload was there before
		return errors.Join(err, undo)
	}
	// Next: restart containerd if needed (systemd.Client.RestartIfNeeded with
	// engine.ConfigWritten()); later, engine.PlanUninstall and Apply undo it.
	return nil
}

// Another installer's install, from the Node's reported runtime to the
// applied config, on a host root with containerd 2.2 and a Kata payload.
func Example_anotherInstaller() {
	host, payload := exampleHost()
	defer os.RemoveAll(host)
	defer os.RemoveAll(payload)
	if err := install(context.Background(), host, payload, "containerd://2.2.9"); err != nil {
		log.Fatal(err)
	}
	// Output:
	// [/etc/containerd/kata-deploy.toml /etc/containerd/config.toml]
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
