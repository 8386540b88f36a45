package crio_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kata-deploy/kata-deploy/crio"
	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
)

// CRI-O gets one drop-in of kata-deploy's own; crio.conf is never edited.
func Example() {
	host, _ := os.MkdirTemp("", "host")
	defer os.RemoveAll(host)
	os.MkdirAll(filepath.Join(host, "etc/crio/crio.conf.d"), 0o755)

	v, _ := kataruntime.ParseVersion("1.34.0")
	engine, err := crio.New(host, v)
	if err != nil {
		panic(err)
	}
	handlers, _ := kataruntime.Handlers([]string{"qemu"})
	plan, err := engine.PlanInstall(context.Background(), kataruntime.Spec{Handlers: handlers, Mode: kataruntime.ModeRuntimeClass})
	if err != nil {
		panic(err)
	}
	if err := engine.Apply(context.Background(), plan); err != nil {
		panic(err)
	}
	data, _ := os.ReadFile(filepath.Join(host, engine.DropInPath()))
	lines := strings.Split(string(data), "\n")
	fmt.Println(strings.Join(lines[:8], "\n"))
	// Output:
	// # Written by kata-deploy: Kata Containers runtime handlers. Removed by uninstall; do not edit.
	//
	// [crio.runtime.runtimes.kata]
	// runtime_path = "/opt/kata/bin/containerd-shim-kata-v2"
	// runtime_type = "vm"
	// runtime_root = "/run/vc"
	// runtime_config_path = "/opt/kata/share/defaults/kata-containers/runtimes/qemu/configuration-qemu.toml"
	// privileged_without_host_devices = true
}
