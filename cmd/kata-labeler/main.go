// Command kata-labeler labels the node it runs on with the container
// runtime the node reports (kata-containers.io/container-runtime=containerd
// or crio), so that the installer DaemonSets can select their nodes. It
// watches only its own node and keeps the label right until SIGTERM.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kata-deploy/kata-deploy/cmd/internal/cli"
	"github.com/kata-deploy/kata-deploy/nodelabel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// The image sets KATA_PAYLOAD and KATA_HOST_ROOT for the installer.
	env := cli.Environ{Vars: os.Environ(), Stdout: os.Stdout, Stderr: os.Stderr}
	os.Exit(cli.ExitCode(run(ctx, os.Args[1:], env), os.Stderr))
}

func run(ctx context.Context, args []string, env cli.Environ) error {
	stderr := env.Stderr
	fs := cli.NewFlagSet("kata-labeler")
	node := fs.String("node-name", "", "this node's name (required)")
	domain := fs.String("label-domain", nodelabel.DefaultDomain, "domain of the node labels")
	health := fs.String("health-addr", ":8090", "address for /healthz and /readyz (empty: none)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster)")
	if err := cli.Parse(fs, args, env); err != nil {
		return err
	}
	log := cli.Logger(stderr)
	labeler, err := cli.NodeClient(*kubeconfig, *node, *domain, log)
	if err != nil {
		return err
	}
	var h cli.Health
	if err := h.Serve(ctx, *health, log); err != nil {
		return err
	}
	h.SetReady()
	return labeler.RunRuntimeLabeler(ctx)
}
