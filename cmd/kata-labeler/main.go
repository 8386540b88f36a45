// Command kata-labeler labels the node it runs on with the container
// runtime the node reports (kata-containers.io/container-runtime=containerd
// or crio), so that the installer DaemonSets can select their nodes. It
// watches only its own node and keeps the label right until SIGTERM,
// never acting on a transient (a runtime restarting, a NotReady node). On
// SIGTERM it takes the label off when its DaemonSet is gone or being
// deleted: kata-deploy is being removed.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

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
	settle := fs.Duration("settle", nodelabel.DefaultSettle, "how long the node must report another runtime before the label follows it")
	ds := fs.String("daemonset", "", "namespace/name of this labeler's DaemonSet: on SIGTERM, remove the label if it is gone or being deleted")
	if err := cli.Parse(fs, args, env); err != nil {
		return err
	}
	if *settle < 0 {
		return cli.Usage("--settle %s: want zero or more", *settle)
	}
	ns, dsName, hasDS := strings.Cut(*ds, "/")
	if *ds != "" && (!hasDS || ns == "" || dsName == "") {
		return cli.Usage("--daemonset %q: want namespace/name", *ds)
	}
	log := cli.Logger(stderr)
	labeler, err := cli.NodeClient(*kubeconfig, *node, *domain, log, nodelabel.WithSettle(*settle))
	if err != nil {
		return err
	}
	var h cli.Health
	if err := h.Serve(ctx, *health, log); err != nil {
		return err
	}
	h.SetReady()
	if err := labeler.RunRuntimeLabeler(ctx); err != nil {
		return err
	}
	if !hasDS {
		return nil
	}
	// The pod's grace period is all the time this has; ctx itself is done.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	removed, why, err := labeler.ReleaseRuntimeLabel(rctx, ns, dsName)
	if err != nil {
		return fmt.Errorf("stopping: cannot tell whether kata-deploy is being removed, so the runtime label stays: %w", err)
	}
	log.Info("stopping", "runtime label removed", removed, "why", why)
	return nil
}
