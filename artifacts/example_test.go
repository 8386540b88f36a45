package artifacts_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/kata-deploy/kata-deploy/artifacts"
)

// A payload directory in the kata-static layout, installed onto a host root,
// installed again (nothing to do), then uninstalled.
func Example() {
	ctx := context.Background()
	payload, _ := os.MkdirTemp("", "payload")
	host, _ := os.MkdirTemp("", "host")
	defer os.RemoveAll(payload)
	defer os.RemoveAll(host)
	for name, content := range map[string]string{
		"opt/kata/bin/containerd-shim-kata-v2":                            "shim",
		"opt/kata/share/defaults/kata-containers/configuration-qemu.toml": "[hypervisor.qemu]\npath = \"/opt/kata/bin/qemu-system-x86_64\"\n",
		"opt/kata/share/kata-containers/vmlinux.container":                "kernel",
	} {
		p := filepath.Join(payload, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		_ = os.WriteFile(p, []byte(content), 0o755)
	}

	rep, err := artifacts.Install(ctx, host, payload, artifacts.WithSuffix("demo"), artifacts.WithDebug())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("installed:", len(rep.Added), "entries in", rep.Dest)
	fmt.Println("qemu config:", rep.Shims["qemu"])

	rep, err = artifacts.Install(ctx, host, payload, artifacts.WithSuffix("demo"), artifacts.WithDebug())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("again, changes:", rep.HasChanges())

	st, err := artifacts.Status(ctx, host, artifacts.WithSuffix("demo"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("recorded:", len(st.Files), "entries,", st.Layout)

	rep, err = artifacts.Uninstall(ctx, host, artifacts.WithSuffix("demo"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("removed:", len(rep.Removed), "kept:", len(rep.Kept))
	entries, _ := os.ReadDir(host)
	fmt.Println("left on the host:", len(entries))
	// Output:
	// installed: 16 entries in /opt/kata-demo
	// qemu config: /opt/kata-demo/share/defaults/kata-containers/runtimes/qemu/configuration-qemu.toml
	// again, changes: false
	// recorded: 16 entries, kata-static
	// removed: 17 kept: 0
	// left on the host: 0
}
