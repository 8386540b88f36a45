// Command kata-cleanup finishes an uninstall on the nodes an installer
// marked kata-containers.io/kata-runtime=cleanup: it restarts the container
// runtime and the kubelet, removes both kata-deploy labels, then idles
// until SIGTERM, as the original cleanup DaemonSet did. It exists because
// those steps cannot run inside the installer's own shutdown.
//
// Two subcommands run the cluster-side steps of a Helm uninstall (the
// chart's pre-delete hook): remove-installers deletes the installer
// DaemonSets and waits for their pods to be gone; await-cleanup waits until
// no node is left to clean up.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/client-go/kubernetes"

	"github.com/kata-deploy/kata-deploy/cmd/internal/cleanup"
	"github.com/kata-deploy/kata-deploy/cmd/internal/cli"
	"github.com/kata-deploy/kata-deploy/cmd/internal/teardown"
	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/runtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// The image sets KATA_PAYLOAD for the installer; it is no typo here.
	env := cli.Environ{Vars: os.Environ(), Stdout: os.Stdout, Stderr: os.Stderr}
	os.Exit(cli.ExitCode(run(ctx, os.Args[1:], env), os.Stderr))
}

func run(ctx context.Context, args []string, env cli.Environ) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return runRelease(ctx, args[0], args[1:], env)
	}
	stderr := env.Stderr
	fs := cli.NewFlagSet("kata-cleanup")
	hostRoot := fs.String("host-root", "/host", "where the node's root file system is mounted")
	rt := fs.String("runtime", "auto", "container runtime: containerd, crio, k3s, k3s-agent, rke2-server, rke2-agent, k0s, microk8s or auto")
	node := fs.String("node-name", "", "this node's name (required)")
	domain := fs.String("label-domain", nodelabel.DefaultDomain, "domain of the node labels")
	restart := fs.Bool("restart", true, "restart the runtime and the kubelet through systemd")
	socket := fs.String("systemd-socket", "", "systemd's private socket, a host path (default /run/systemd/private)")
	health := fs.String("health-addr", ":8092", "address for /healthz and /readyz (empty: none)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster)")
	once := fs.Bool("once", false, "exit after cleaning up instead of idling until SIGTERM")
	if err := cli.Parse(fs, args, env); err != nil {
		return err
	}
	var err error
	if *hostRoot, err = cli.HostRoot(*hostRoot); err != nil {
		return err
	}
	if *rt != "auto" && *rt != "" {
		if _, err := runtime.ParseVariant(*rt); err != nil {
			return cli.Usage("--runtime: %v", err)
		}
	}
	log := cli.Logger(stderr)
	n, err := cli.NodeClient(*kubeconfig, *node, *domain, log)
	if err != nil {
		return err
	}
	cfg := &cleanup.Config{HostRoot: *hostRoot, Runtime: *rt, Restart: *restart, SystemdSocket: *socket,
		Node: n, Log: log}
	var h cli.Health
	if err := h.Serve(ctx, *health, log); err != nil {
		return err
	}
	if err := cfg.Run(ctx); err != nil {
		return err
	}
	h.SetReady()
	log.Info("cleanup done: labels removed, runtime and kubelet restarted")
	if !*once {
		<-ctx.Done()
	}
	return nil
}

// runRelease runs one cluster-side step of removing kata-deploy.
func runRelease(ctx context.Context, sub string, args []string, env cli.Environ) error {
	if sub != "remove-installers" && sub != "await-cleanup" {
		return cli.Usage("unknown subcommand %q (want remove-installers or await-cleanup, or none to clean up this node)", sub)
	}
	stderr := env.Stderr
	fs := cli.NewFlagSet("kata-cleanup " + sub)
	namespace := fs.String("namespace", "kube-system", "namespace of the installer DaemonSets")
	daemonsets := fs.StringSlice("daemonsets", []string{"kata-deploy-containerd", "kata-deploy-crio"}, "remove-installers: the installer DaemonSets to delete")
	domain := fs.String("label-domain", nodelabel.DefaultDomain, "domain of the node labels")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster)")
	if err := cli.Parse(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usage("unexpected arguments %q", fs.Args())
	}
	log := cli.Logger(stderr)
	cfg, err := cli.RestConfig(*kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("API client: %w", err)
	}
	switch sub {
	case "remove-installers":
		if err := teardown.RemoveDaemonSets(ctx, cs, *namespace, *daemonsets, log); err != nil {
			return err
		}
		log.Info("installers gone: each has uninstalled Kata from its node")
		return nil
	case "await-cleanup":
		sel := *domain + "/" + nodelabel.KataLabelName + "=" + string(nodelabel.KataCleanup)
		if err := teardown.AwaitNodesClean(ctx, cs, sel, log); err != nil {
			return err
		}
		log.Info("cleanup done on every node")
		return nil
	}
	panic("unreachable: subcommand checked above")
}
