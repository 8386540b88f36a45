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
	// ends, install uninstalls only if it is gone or being deleted, or no
	// longer targets the node for MismatchGrace.
	DaemonSet string
	// MismatchGrace is how long a DaemonSet that exists but no longer
	// targets the node must stay so before a stopped installer takes it
	// for a removal (DefaultMismatchGrace when zero).
	MismatchGrace time.Duration
	// Output is status's format: text or json.
	Output string
	Stdout io.Writer
}

// Run runs one kata-installer subcommand on the node. Install keeps the
// node labelled until ctx ends, then uninstalls only if kata-deploy is
// really being removed from the node (see removal); an uninstall marks
// the node for kata-cleanup.
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

// DefaultMismatchGrace is how long a stopped installer waits for a
// DaemonSet that no longer targets its node to target it again before
// uninstalling: longer than a runtime label's transient ever lasts, well
// inside the pod's termination grace period (300 s) with the uninstall.
const DefaultMismatchGrace = time.Minute

// stopTimeout bounds the decision and the uninstall after ctx ended: the
// pod's termination grace period is all the time they have.
const stopTimeout = 5 * time.Minute

// run installs, serves health until ctx ends, keeps the kata-runtime label
// meanwhile, and then decides whether to uninstall. An install that ctx
// interrupts is not rolled back: the stop is decided like any other.
func (c *Config) run(ctx context.Context, o RunOptions) error {
	var h cli.Health
	if !o.Once {
		if err := h.Serve(ctx, o.HealthAddr, c.log()); err != nil {
			return err
		}
	}
	state, err := c.Install(ctx)
	if err != nil {
		if ctx.Err() == nil || o.Once {
			return err
		}
		c.log().Warn("stopped during the install", "err", err)
		return c.stop(ctx, o)
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
	return c.stop(ctx, o)
}

// stop runs once ctx has ended: it uninstalls only if kata-deploy is being
// removed from the node, and says why either way, in the log and as an
// event on the Node. Without a DaemonSet to ask (run by hand, or without
// an API server) a stop is a removal.
func (c *Config) stop(ctx context.Context, o RunOptions) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	ns, name, ok := strings.Cut(o.DaemonSet, "/")
	if !ok || c.Node == nil {
		return c.uninstallAndMark(ctx)
	}
	grace := o.MismatchGrace
	if grace <= 0 {
		grace = DefaultMismatchGrace
	}
	remove, why, err := c.removal(ctx, ns, name, grace)
	if err != nil {
		err = fmt.Errorf("cannot tell whether kata-deploy is being removed, so Kata stays installed: %w", err)
		c.event(ctx, nodelabel.ReasonKeptInstalled, "%v", err)
		return err
	}
	if !remove {
		c.log().Info("stopping without uninstalling", "why", why)
		c.event(ctx, nodelabel.ReasonKeptInstalled, "installer stopped, Kata stays installed: %s", why)
		return nil
	}
	c.log().Info("stopping: uninstalling", "why", why)
	c.event(ctx, nodelabel.ReasonRemovalConfirmed, "installer stopped, uninstalling Kata: %s", why)
	return c.uninstallAndMark(ctx)
}

// removal tells a removal from a stop that must undo nothing. The
// DaemonSet gone or being deleted is a removal. A DaemonSet that targets
// the node is not: a rolling update, or the pod deleted, evicted or
// drained, after which the DaemonSet starts another installer that finds
// Kata installed and changes nothing. A DaemonSet that exists but does not
// target the node (its runtime label gone, its selector edited) is a
// removal only if that lasts for grace: a momentary mismatch must not undo
// an install. An API server that does not answer for the whole grace
// leaves Kata installed (err).
func (c *Config) removal(ctx context.Context, ns, name string, grace time.Duration) (remove bool, why string, err error) {
	deadline := time.Now().Add(grace)
	waiting := false
	for {
		t, err := c.Node.DaemonSetTargetsNode(ctx, ns, name)
		switch {
		case err == nil && t.Removed:
			return true, t.Reason, nil
		case err == nil && t.Targets:
			if waiting {
				return false, t.Reason + " again", nil
			}
			return false, t.Reason, nil
		case err == nil && !waiting:
			waiting = true
			c.log().Info("the DaemonSet does not target this node; uninstalling only if that lasts", "why", t.Reason, "grace", grace)
		case err != nil:
			c.log().Warn("cannot read the DaemonSet; asking again", "err", err)
		}
		if !time.Now().Before(deadline) {
			if err != nil {
				return false, "", err
			}
			return true, fmt.Sprintf("%s, still after %s", t.Reason, grace), nil
		}
		select {
		case <-ctx.Done():
			return false, "", ctx.Err()
		case <-time.After(min(removalPoll, time.Until(deadline))):
		}
	}
}

// removalPoll is how often removal asks again.
const removalPoll = 2 * time.Second

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
