package containerd_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kata-deploy/kata-deploy/containerd"
	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
)

// Plan, apply and undo on a host whose containerd 2.2 config imports a
// drop-in directory: the user's file is not touched at all.
func Example() {
	host, _ := os.MkdirTemp("", "host")
	defer os.RemoveAll(host)
	config := filepath.Join(host, "etc/containerd/config.toml")
	os.MkdirAll(filepath.Dir(config), 0o755)
	os.WriteFile(config, []byte("version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n"), 0o644)

	v, _ := kataruntime.ParseVersion("2.2.9")
	engine, err := containerd.New(host, kataruntime.VariantContainerd, v)
	if err != nil {
		panic(err)
	}
	handlers, _ := kataruntime.Handlers([]string{"qemu"})
	plan, err := engine.PlanInstall(context.Background(), kataruntime.Spec{Handlers: handlers, Mode: kataruntime.ModeRuntimeClass})
	if err != nil {
		panic(err)
	}
	for _, c := range plan.Changes {
		fmt.Println(c.Op, c.Path)
	}
	ctx := context.Background()
	if err := engine.Apply(ctx, plan); err != nil {
		panic(err)
	}
	undo, _ := engine.PlanUninstall(context.Background())
	if err := engine.Apply(ctx, undo); err != nil {
		panic(err)
	}
	for _, c := range undo.Changes {
		fmt.Println(c.Op, c.Path)
	}
	// Output:
	// create directory /etc/containerd/conf.d
	// create /etc/containerd/conf.d/kata-deploy.toml
	// delete /etc/containerd/conf.d/kata-deploy.toml
	// remove directory /etc/containerd/conf.d
}
