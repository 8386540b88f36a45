// Command kata-installer installs Kata Containers on the node it runs on,
// keeps it labelled while it runs, and uninstalls it on SIGTERM only when
// kata-deploy is really being removed from the node (docs/stability.md).
// Subcommands: install (the default), uninstall, plan, status.
package main

import (
	"context"
	"os"
	"os/signal"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/kata-deploy/kata-deploy/artifacts"
	"github.com/kata-deploy/kata-deploy/cmd/internal/cli"
	"github.com/kata-deploy/kata-deploy/cmd/internal/installer"
	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/runtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(cli.ExitCode(run(ctx, os.Args[1:], cli.Environ{Vars: os.Environ(), Stdout: os.Stdout, Stderr: os.Stderr}), os.Stderr))
}

func run(ctx context.Context, args []string, env cli.Environ) error {
	stdout, stderr := env.Stdout, env.Stderr
	sub := "install"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "install", "uninstall", "plan", "status":
	default:
		return cli.Usage("unknown subcommand %q (want install, uninstall, plan or status)", sub)
	}
	fs := cli.NewFlagSet("kata-installer " + sub)
	hostRoot := fs.String("host-root", "/host", "where the node's root file system is mounted")
	rt := fs.String("runtime", "auto", "container runtime: containerd, crio, k3s, k3s-agent, rke2-server, rke2-agent, k0s, microk8s or auto")
	rtVersion := fs.String("runtime-version", "", "the runtime's version, e.g. 1.6.20 (default: from the Node, else from the runtime's CRI socket)")
	rtConfig := fs.String("runtime-config", "", "host path of containerd's config file (k0s: its drop-in directory), or of CRI-O's drop-in directory, when the runtime does not use its usual one")
	payload := fs.String("payload", "/opt/kata-artifacts", "Kata payload: a kata-static tree or tarball (.tar, .tar.gz, .tar.xz, .tar.zst)")
	mode := fs.String("mode", string(runtime.ModeRuntimeClass), "how pods opt in: runtimeclass, or untrusted (the io.kubernetes.cri.untrusted-workload annotation; containerd 1.x)")
	shims := fs.StringSlice("shims", []string{"qemu", "clh", "dragonball"}, "Kata shims to register, as handlers kata-<shim> (fc also needs --snapshotter fc=devmapper)")
	defaultShim := fs.String("default-shim", "", "shim behind the default \"kata\" handler (default: the first of --shims)")
	prefix := fs.String("prefix", runtime.DefaultPrefix, "host directory Kata is installed under, as <prefix>/kata")
	suffix := fs.String("suffix", "", "name of an independent second install: <prefix>/kata-<suffix>, handlers kata-<shim>-<suffix>")
	snapshotters := fs.StringToString("snapshotter", nil, "containerd snapshotter per shim, e.g. fc=devmapper (the snapshotter must be configured in containerd)")
	restart := fs.Bool("restart", true, "restart the runtime through systemd when its config changed (false: no systemd calls)")
	label := fs.Bool("label", true, "use the API server: read the Node, label it, record events (false: no API server needed)")
	once := fs.Bool("once", false, "exit after installing instead of waiting for SIGTERM")
	node := fs.String("node-name", "", "this node's name (required with --label)")
	ds := fs.String("daemonset", "", "namespace/name of this installer's DaemonSet: on SIGTERM, uninstall only if it is gone or being deleted, or no longer targets the node for --mismatch-grace")
	mismatchGrace := fs.Duration("mismatch-grace", installer.DefaultMismatchGrace, "on SIGTERM, how long the DaemonSet must keep not targeting the node before that counts as a removal")
	health := fs.String("health-addr", ":8091", "address for /healthz and /readyz (empty: none)")
	domain := fs.String("label-domain", nodelabel.DefaultDomain, "domain of the node labels")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster)")
	socket := fs.String("systemd-socket", "", "systemd's private socket, a host path (default /run/systemd/private)")
	verify := fs.Duration("verify-timeout", 2*time.Minute, "how long the runtime, once active again after its restart, may take to serve the handlers over CRI (the Node is then waited for without a limit)")
	debug := fs.Bool("debug", false, "enable Kata's debug logs and the agent's debug console (a drop-in in each shim's config.d)")
	httpsProxy := fs.String("agent-https-proxy", "", "HTTPS proxy for the Kata agent (guest kernel parameter agent.https_proxy)")
	noProxy := fs.String("agent-no-proxy", "", "hosts the Kata agent reaches without proxy (agent.no_proxy)")
	kernelParams := fs.StringSlice("kernel-params", nil, "extra guest kernel parameters")
	annotations := fs.StringToString("hypervisor-annotations", nil, "extra hypervisor annotations pods may set, per shim: qemu=default_vcpus;default_memory,clh=...")
	output := fs.StringP("output", "o", "text", "status output: text or json")
	if err := cli.Parse(fs, args, env); err != nil {
		return err
	}
	m, err := runtime.ParseMode(*mode)
	if err != nil {
		return cli.Usage("--mode: %v", err)
	}
	// An unset --prefix is the default install's, not a value given: the
	// uninstall and status then follow the node's record without a warning.
	if !fs.Changed("prefix") {
		*prefix = ""
	}
	if *hostRoot, err = cli.HostRoot(*hostRoot); err != nil {
		return err
	}
	if err := checkFlags(*rt, *rtVersion, *output, *prefix, *suffix, *defaultShim, *shims); err != nil {
		return err
	}
	log := cli.Logger(stderr)
	cfg := &installer.Config{HostRoot: *hostRoot, Runtime: *rt, RuntimeVersion: *rtVersion, RuntimeConfig: *rtConfig, Payload: *payload, Mode: m, Shims: *shims,
		DefaultShim: *defaultShim, Prefix: *prefix, Suffix: *suffix, Snapshotters: *snapshotters, Restart: *restart, SystemdSocket: *socket,
		VerifyTimeout: *verify, Log: log}
	cfg.Settings = artifacts.Settings{Debug: *debug, AgentHTTPSProxy: *httpsProxy, AgentNoProxy: *noProxy,
		KernelParams: *kernelParams, Annotations: map[string][]string{}}
	for shim, list := range *annotations {
		cfg.Settings.Annotations[shim] = strings.Split(list, ";")
	}
	if *label {
		if cfg.Node, err = cli.NodeClient(*kubeconfig, *node, *domain, log); err != nil {
			return err
		}
	}
	return installer.Run(ctx, cfg, installer.RunOptions{Command: sub, HealthAddr: *health, Once: *once, DaemonSet: *ds, MismatchGrace: *mismatchGrace,
		Output: *output, Stdout: stdout})
}

// checkFlags refuses, as usage errors and before anything is read, flag
// values no host could make right.
func checkFlags(rt, rtVersion, output, prefix, suffix, defaultShim string, shims []string) error {
	if rt != "auto" && rt != "" {
		if _, err := runtime.ParseVariant(rt); err != nil {
			return cli.Usage("--runtime: %v", err)
		}
	}
	if rtVersion != "" {
		if _, err := runtime.ParseVersion(rtVersion); err != nil {
			return cli.Usage("--runtime-version: %v", err)
		}
	}
	if output != "text" && output != "json" {
		return cli.Usage("--output %q: want text or json", output)
	}
	if prefix != "" && !path.IsAbs(prefix) {
		return cli.Usage("--prefix %q: want an absolute host path, such as %s", prefix, runtime.DefaultPrefix)
	}
	// Each flag is checked on its own, so the error names the one at fault.
	inst := runtime.Installation{Prefix: prefix, Suffix: suffix}
	if err := inst.Validate(); err != nil {
		return cli.Usage("--suffix: %v", err)
	}
	if _, err := inst.Handlers(shims); err != nil {
		if _, plain := (runtime.Installation{Prefix: prefix}).Handlers(shims); plain == nil {
			return cli.Usage("--suffix: %v", err) // the suffix makes a handler name too long
		}
		return cli.Usage("--shims: %v", err)
	}
	if _, err := inst.Handlers(shims, runtime.WithDefaultShim(defaultShim)); err != nil {
		return cli.Usage("--default-shim: %v", err)
	}
	return nil
}
