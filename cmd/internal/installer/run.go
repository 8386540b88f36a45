package installer

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/cmd/internal/cli"
	"github.com/kata-deploy/kata-deploy/nodelabel"
)

// RunOptions are how the kata-installer command runs, beside what the
// install itself needs (Config).
type RunOptions struct {
	// Command is the subcommand: install, uninstall, plan or status.
	Command string
	// HealthAddr is where install serves /healthz and /readyz ("": none).
	HealthAddr string
	// Once makes install return once installed instead of waiting for ctx.
	Once bool
	// DaemonSet is the installer's DaemonSet as namespace/name: when ctx
	// ends, install uninstalls only if it no longer targets the node.
	DaemonSet string
	// Output is status's format: text or json.
	Output string
	Stdout io.Writer
}

// Run runs one kata-installer subcommand on the node. Install keeps the
// node labelled until ctx ends, then uninstalls unless the DaemonSet is
// only being rolled; an uninstall marks the node for kata-cleanup.
func Run(ctx context.Context, c *Config, o RunOptions) error {
	switch o.Command {
	case "install", "":
		return c.run(ctx, o)
	case "uninstall":
		return c.uninstallAndMark(ctx)
	case "plan":
		return c.Plan(ctx, o.Stdout)
	case "status":
		s, err := c.Status(ctx)
		if err != nil {
			return err
		}
		return s.Write(o.Stdout, o.Output)
	}
	return fmt.Errorf("unknown subcommand %q (want install, uninstall, plan or status)", o.Command)
}

// run installs, serves health until ctx ends, keeps the kata-runtime label
// meanwhile, and then decides whether to uninstall.
func (c *Config) run(ctx context.Context, o RunOptions) error {
	var h cli.Health
	if !o.Once {
		if err := h.Serve(ctx, o.HealthAddr, c.log()); err != nil {
			return err
		}
	}
	state, err := c.Install(ctx)
	if err != nil {
		return err
	}
	h.SetReady()
	c.log().Info("Kata Containers installed", "kata-runtime", state)
	if o.Once {
		return nil
	}
	if c.Node != nil {
		go func() {
			if err := c.Node.KeepKataState(ctx, state); err != nil {
				c.log().Error("keeping the kata-runtime label", "err", err)
			}
		}()
	}
	<-ctx.Done()
	// The grace period is all the time uninstall has; ctx itself is done.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if ns, name, ok := strings.Cut(o.DaemonSet, "/"); ok && c.Node != nil {
		t, err := c.Node.DaemonSetTargetsNode(ctx, ns, name)
		if err != nil {
			return fmt.Errorf("cannot tell whether this is a rolling update, so Kata stays installed: %w", err)
		}
		if t.Targets {
			c.log().Info("stopping without uninstalling: the DaemonSet still targets this node", "why", t.Reason)
			return nil
		}
		c.log().Info("stopping: uninstalling, as the DaemonSet no longer targets this node", "why", t.Reason)
	}
	return c.uninstallAndMark(ctx)
}

// uninstallAndMark uninstalls and marks the node for kata-cleanup, which
// restarts the runtime and the kubelet: steps the installer's own shutdown
// cannot take.
func (c *Config) uninstallAndMark(ctx context.Context) error {
	if err := c.Uninstall(ctx); err != nil {
		return err
	}
	if c.Node != nil {
		return c.Node.SetKataState(ctx, nodelabel.KataCleanup)
	}
	return nil
}
