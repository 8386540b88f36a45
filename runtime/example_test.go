package runtime_test

import (
	"fmt"
	"testing/fstest"

	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
)

// From what a Node reports to the handlers to register.
func Example() {
	rt, err := kataruntime.ParseRuntime("containerd://1.7.22-k3s1")
	if err != nil {
		panic(err)
	}
	fmt.Println(rt.Kind, rt.Version.AtLeast(2, 1))

	handlers, err := kataruntime.Handlers([]string{"qemu", "dragonball"})
	if err != nil {
		panic(err)
	}
	for _, h := range handlers {
		fmt.Println(h.Name, h.ShimPath)
	}
	// Output:
	// containerd false
	// kata /opt/kata/bin/containerd-shim-kata-v2
	// kata-qemu /opt/kata/bin/containerd-shim-kata-v2
	// kata-dragonball /opt/kata/runtime-rs/bin/containerd-shim-kata-v2
}

// Detection narrows by the runtime the Node reports and prefers a
// distribution over a stand-alone containerd unit it ships beside.
func ExampleDetectVariant() {
	host := fstest.MapFS{
		"etc/systemd/system/k3s-agent.service":  {},
		"lib/systemd/system/containerd.service": {},
	}
	v, _, err := kataruntime.DetectVariant(host, kataruntime.Containerd)
	fmt.Println(v, v.RuntimeUnit(), err)
	// Output: k3s-agent k3s-agent.service <nil>
}

// A second install beside the default one: one value says where its tree
// is and what its handlers and engine are called, for every package.
func ExampleInstallation() {
	inst := kataruntime.Installation{Prefix: "/usr/local", Suffix: "canary"}
	qemu, _ := kataruntime.LookupShim("qemu")
	fmt.Println(inst.Dest())
	fmt.Println(inst.ConfigPath(qemu))
	fmt.Println(inst.DefaultHandlerName(), inst.HandlerName("qemu"), inst.EngineName())

	handlers, err := inst.Handlers([]string{"qemu"})
	if err != nil {
		panic(err)
	}
	fmt.Println(handlers[1].Name, handlers[1].ConfigPath == inst.ConfigPath(qemu))
	// Output:
	// /usr/local/kata-canary
	// /usr/local/kata-canary/share/defaults/kata-containers/runtimes/qemu/configuration-qemu.toml
	// kata-canary kata-qemu-canary kata-deploy-canary
	// kata-qemu-canary true
}
