package installer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/artifacts"
	"github.com/kata-deploy/kata-deploy/internal/cri"
	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/internal/noderecord"
	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// Install installs Kata on the node: payload, runtime config, restart when
// needed, verification, label. A restart or verification that fails puts
// the runtime config back, restarts the runtime again and leaves the node
// unlabelled; the payload goes only if this run put the first one there (a
// failed re-install keeps the new payload: the old one is not kept to swap
// back). Running it again on an installed node changes nothing.
//
// An install that ctx interrupts once the config is applied is not a
// failure: nothing is undone (undoing would restart the runtime once more),
// the record says how far it got, and the error wraps ErrInterrupted. The
// next run restarts the runtime only if this one had not, and finishes.
//
// It returns the kata-runtime state the node now has: KataInstalled once
// the runtime was verified to serve every handler, KataWaitingRestart when
// restarting was disabled and the runtime does not serve them yet (a later
// run, after the runtime's restart, finishes the job).
func (c *Config) Install(ctx context.Context) (state nodelabel.KataState, err error) {
	// One view of the host root serves the whole operation.
	root, err := hostfs.New(c.HostRoot)
	if err != nil {
		return "", err
	}
	unlock, err := c.lock(ctx, root)
	if err != nil {
		return "", err
	}
	defer unlock()
	start := time.Now()
	c.event(ctx, nodelabel.ReasonInstallStarted, "installing Kata Containers")
	defer func() {
		if err != nil && !errors.Is(err, ErrInterrupted) {
			c.event(context.WithoutCancel(ctx), nodelabel.ReasonInstallFailed, "%v", err)
		}
	}()
	t, err := c.detect(ctx, root)
	if err != nil {
		return "", err
	}
	prev, err := c.loadRecord(root)
	if err != nil {
		return "", err
	}
	if err := c.checkRecord(t, prev); err != nil {
		return "", err
	}
	// The config is planned first: a config we cannot edit must fail the
	// install before anything is written.
	plan, err := t.engine.PlanInstall(ctx, t.spec)
	if err != nil {
		return "", err
	}
	// The record goes first, so that whatever happens next, the node says
	// what may be on it and where.
	rec := c.newRecord(t, prev)
	// A re-run over the same install leaves its record as it is: the
	// record already says what may be on the node and where, whether it
	// is verified or waits for the runtime's restart.
	recorded := func(s noderecord.State) bool {
		done := *rec
		done.State = s
		return noderecord.Equivalent(prev, &done)
	}
	if !recorded(noderecord.Installed) && !recorded(noderecord.PendingRestart) {
		if err := c.saveRecord(root, rec, noderecord.Installing); err != nil {
			return "", err
		}
	}
	// The payload refuses handlers it would not run before it writes.
	rep, err := artifacts.Install(ctx, c.HostRoot, c.Payload, append(c.artifactOptions(), artifacts.WithHandlers(t.spec.Handlers))...)
	if err != nil {
		c.forgetRecord(root, rec, prev)
		return "", fmt.Errorf("install payload: %w", withShimsHint(err))
	}
	c.log().Info("payload installed", "dest", rep.Dest, "added", len(rep.Added), "changed", len(rep.Changed), "removed", len(rep.Removed))
	// Undoing this run removes the payload only if it put the first one
	// there: artifacts' report says whether it found one.
	hadPayload := rep.Previous
	if err := t.engine.Apply(ctx, plan); err != nil {
		c.undoPayload(ctx, hadPayload)
		c.forgetRecord(root, rec, prev)
		return "", fmt.Errorf("register Kata with %s: %w", t.variant, err)
	}
	if rec.ConfigFiles, err = configFiles(ctx, t); err != nil {
		return "", err
	}
	verified, err := c.restartAndVerify(ctx, t)
	if err != nil && ctx.Err() != nil {
		// Stopped, not failed: the config may well be good, and rolling it
		// back would restart the runtime once more.
		return "", fmt.Errorf("%w: the config stays applied for the next run to verify: %w", ErrInterrupted, err)
	}
	if err != nil {
		err = c.rollback(ctx, t, hadPayload, prev, err)
		if len(unwrapAll(err)) == 1 {
			c.forgetRecord(root, rec, prev)
		}
		return "", err
	}
	if !verified {
		if err := c.settle(ctx, root, rec, noderecord.PendingRestart, nodelabel.KataWaitingRestart, nil); err != nil {
			return "", err
		}
		c.event(ctx, nodelabel.ReasonWaitingRestart, "Kata Containers is written but %s was not restarted (restart disabled), so nothing serves handlers %s yet: the node is labelled %s=%s instead of true. Restart the runtime and run the installer again to verify and label it.",
			t.variant.RuntimeUnit(), strings.Join(t.handlerNames(), ", "), c.kataLabel(), nodelabel.KataWaitingRestart)
		return nodelabel.KataWaitingRestart, nil
	}
	if err := c.settle(ctx, root, rec, noderecord.Installed, nodelabel.KataInstalled, t.handlerNames()); err != nil {
		return "", err
	}
	c.event(ctx, nodelabel.ReasonInstallSucceeded, "Kata Containers installed in %s: handlers %s on %s %s",
		time.Since(start).Round(time.Millisecond), strings.Join(t.handlerNames(), ", "), t.variant, t.version)
	return nodelabel.KataInstalled, nil
}

// ErrInterrupted marks an install that its context stopped after the
// runtime config was applied: not a failure, and not rolled back.
var ErrInterrupted = errors.New("install interrupted")

// settle records the install in state and, with an API server, labels the
// node kata: the record first, so the node never says more than it holds.
// A node labelled installed must be Ready with the handlers listed first.
// Neither wait is bounded but by ctx: the runtime has been verified to
// serve the handlers, so an API server or kubelet that takes its time is
// waited for, never a reason to undo the install.
func (c *Config) settle(ctx context.Context, root *hostfs.Root, rec *noderecord.Record, state noderecord.State, kata nodelabel.KataState, handlers []string) error {
	if err := c.saveRecord(root, rec, state); err != nil {
		return err
	}
	if c.Node == nil {
		return nil
	}
	for kata == nodelabel.KataInstalled {
		wctx, cancel := context.WithTimeout(ctx, c.VerifyTimeout)
		err := c.Node.WaitReady(wctx, handlers...)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: before labelling the node: %w", ErrInterrupted, err)
		}
		c.log().Warn("the runtime serves the Kata handlers, but the Node does not show them yet; waiting before labelling it", "err", err)
	}
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		err := c.Node.SetKataState(ctx, kata)
		if err == nil {
			return nil
		}
		c.log().Warn("cannot label the node yet; trying again", "in", delay, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: labelling the node: %w", ErrInterrupted, err)
		case <-time.After(delay):
		}
	}
}

// unwrapAll returns the errors a joined error holds, or err alone.
func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func (c *Config) kataLabel() string {
	if c.Node == nil {
		return nodelabel.DefaultDomain + "/" + nodelabel.KataLabelName
	}
	return c.Node.KataLabel()
}

// withShimsHint says which flag picks the shims when the payload lacks
// one.
func withShimsHint(err error) error {
	if m, ok := errors.AsType[*artifacts.MissingShimError](err); ok {
		return fmt.Errorf("%w: pick --shims from those it has: %s", err, strings.Join(m.Has, ","))
	}
	return err
}

// restartAndVerify restarts the runtime unless it already runs the current
// config, then checks it serves the handlers. With restarting disabled it
// only verifies a runtime that already serves every handler (restarted
// since by someone else), and otherwise reports verified false: nothing
// live can be checked before the runtime's next restart.
func (c *Config) restartAndVerify(ctx context.Context, t *target) (verified bool, err error) {
	unit := t.variant.RuntimeUnit()
	if !c.Restart && unit != "" {
		if !c.servesAll(ctx, t) {
			c.log().Warn("not restarting the runtime (restart disabled): it serves the Kata handlers after its next restart, and a later run labels the node", "unit", unit)
			return false, nil
		}
		c.log().Info("the runtime already serves the Kata handlers; verifying without a restart", "unit", unit)
		return true, c.verify(ctx, t)
	}
	if unit != "" {
		written, err := t.engine.ConfigWritten()
		if err != nil {
			return false, err
		}
		sd, err := c.systemd(ctx, t.root)
		if err != nil {
			return false, err
		}
		defer sd.Close()
		st, decision, err := sd.RestartIfNeeded(ctx, unit, written)
		if err != nil {
			return false, err
		}
		c.log().Info("runtime unit", "unit", unit, "restarted", decision.Restarted, "why", decision.Reason, "active_since", st.ActiveEnter)
	}
	return true, c.verify(ctx, t)
}

// servesAll reports whether the runtime answers and serves every handler
// now, asking once.
func (c *Config) servesAll(ctx context.Context, t *target) bool {
	served, err := c.servedHandlers(ctx, t.root, t.variant)
	return err == nil && len(cri.MissingFrom(served, t.handlerNames())) == 0
}

// servedHandlers asks the runtime once which handlers it serves.
func (c *Config) servedHandlers(ctx context.Context, root *hostfs.Root, v runtime.Variant) ([]string, error) {
	client, err := c.openCRI(root, v)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return client.Handlers(ctx)
}

// rollback undoes a failed install and returns cause, with anything the
// rollback itself could not do.
func (c *Config) rollback(ctx context.Context, t *target, hadPayload bool, prev *noderecord.Record, cause error) error {
	ctx = context.WithoutCancel(ctx)
	c.log().Error("install failed; putting the runtime config back", "err", cause)
	errs := []error{cause}
	if plan, err := t.engine.PlanUninstall(ctx); err != nil {
		errs = append(errs, fmt.Errorf("rollback: %w", err))
	} else if err := t.engine.Apply(ctx, plan); err != nil {
		errs = append(errs, fmt.Errorf("rollback: %w", err))
	} else if err := c.reinstate(ctx, t.root, prev); err != nil {
		errs = append(errs, fmt.Errorf("rollback: %w", err))
	}
	if unit := t.variant.RuntimeUnit(); c.Restart && unit != "" {
		if err := c.restart(ctx, t.root, unit); err != nil {
			errs = append(errs, fmt.Errorf("rollback: %w", err))
		} else {
			c.log().Info("runtime restarted on its previous config", "unit", unit)
			if err := c.answers(ctx, t); err != nil {
				errs = append(errs, fmt.Errorf("rollback: %w", err))
			} else {
				c.log().Info("the runtime answers CRI again on its previous config", "unit", unit)
			}
		}
	}
	c.undoPayload(ctx, hadPayload)
	return errors.Join(errs...)
}

// reinstate puts back the runtime config of the install prev records, when
// this run replaced one (a re-install with other shims or settings): taking
// out this run's config took out the previous install's handlers too, and
// the node must be left as that install left it. The engines render
// deterministically, so the bytes are the previous install's.
func (c *Config) reinstate(ctx context.Context, root *hostfs.Root, prev *noderecord.Record) error {
	if prev == nil || (prev.State != noderecord.Installed && prev.State != noderecord.PendingRestart) {
		return nil
	}
	pc := *c
	pc.adopt(prev)
	pt, err := pc.detect(ctx, root)
	if err != nil {
		return fmt.Errorf("the previous install's config: %w", err)
	}
	plan, err := pt.engine.PlanInstall(ctx, pt.spec)
	if err != nil {
		return fmt.Errorf("the previous install's config: %w", err)
	}
	if err := pt.engine.Apply(ctx, plan); err != nil {
		return fmt.Errorf("the previous install's config: %w", err)
	}
	c.log().Info("the previous install's runtime config is back", "handlers", pt.handlerNames())
	return nil
}

// answers waits until the runtime answers CRI Status: a restart job that
// succeeded only says the unit is active, and a runtime can be active with
// its CRI plugin failed (containerd 1.x).
func (c *Config) answers(ctx context.Context, t *target) error {
	if err := c.waitServing(ctx, t, nil, 250*time.Millisecond); err != nil {
		return fmt.Errorf("after the restart: %w", err)
	}
	return nil
}

func (c *Config) undoPayload(ctx context.Context, hadPayload bool) {
	if hadPayload {
		return
	}
	if _, err := artifacts.Uninstall(context.WithoutCancel(ctx), c.HostRoot, c.artifactOptions()...); err != nil {
		c.log().Error("cannot remove the payload this run installed", "err", err)
	}
}

func (c *Config) restart(ctx context.Context, root *hostfs.Root, unit string) error {
	sd, err := c.systemd(ctx, root)
	if err != nil {
		return err
	}
	defer sd.Close()
	st, err := sd.Restart(ctx, unit)
	if err != nil {
		return err
	}
	c.log().Info("restarted", "unit", unit, "active_since", st.ActiveEnter)
	return nil
}

// Uninstall takes Kata off the node in the order that keeps running pods
// alive: the runtime config goes first and the runtime is restarted without
// the handlers, then the payload goes (running shims keep their binaries'
// inodes). It is safe to repeat after a crash.
//
// The install it takes off is the one the node's record names for the
// Config's suffix, wherever the record says it is (prefix, runtime, runtime
// config, handlers), whatever the other flags say; only a node installed
// by a kata-deploy that kept no record is uninstalled by the flags alone.
func (c *Config) Uninstall(ctx context.Context) (err error) {
	root, err := hostfs.New(c.HostRoot)
	if err != nil {
		return err
	}
	unlock, err := c.lock(ctx, root)
	if err != nil {
		return err
	}
	defer unlock()
	c.event(ctx, nodelabel.ReasonUninstallStarted, "uninstalling Kata Containers")
	defer func() {
		if err != nil {
			c.event(context.WithoutCancel(ctx), nodelabel.ReasonUninstallFailed, "%v", err)
		}
	}()
	rec, err := c.loadRecord(root)
	if err != nil {
		return err
	}
	if rec != nil {
		c.adopt(rec)
	}
	t, err := c.detect(ctx, root)
	if err != nil {
		return err
	}
	plan, err := t.engine.PlanUninstall(ctx)
	if err != nil {
		return err
	}
	for _, n := range plan.Notes {
		c.log().Warn(n)
	}
	if rec != nil {
		if err := c.saveRecord(root, rec, noderecord.Uninstalling); err != nil {
			return err
		}
	}
	if err := t.engine.Apply(ctx, plan); err != nil {
		return fmt.Errorf("restore %s config: %w", t.variant, err)
	}
	if unit := t.variant.RuntimeUnit(); c.Restart && unit != "" && c.servesAny(ctx, t) {
		if err := c.restart(ctx, t.root, unit); err != nil {
			return err
		}
	}
	rep, err := artifacts.Uninstall(ctx, c.HostRoot, c.artifactOptions()...)
	switch {
	case errors.Is(err, artifacts.ErrNotInstalled):
	case err != nil:
		return fmt.Errorf("remove payload: %w", err)
	default:
		for _, k := range rep.Kept {
			c.log().Warn("kept a file kata-deploy did not install", "path", k)
		}
	}
	if rec != nil {
		if err := c.finishRecord(root, rec); err != nil {
			return err
		}
	}
	c.log().Info("Kata Containers uninstalled", "variant", t.variant, "dest", c.dest())
	c.event(ctx, nodelabel.ReasonUninstallSucceeded, "Kata Containers uninstalled from %s: handlers %s removed from %s", c.dest(), strings.Join(t.handlerNames(), ", "), t.variant)
	return nil
}

// servesAny reports whether the runtime still serves any Kata handler, so
// that a repeated uninstall restarts it only if an earlier one stopped
// before the restart. When the runtime cannot be asked, it is restarted.
func (c *Config) servesAny(ctx context.Context, t *target) bool {
	served, err := c.servedHandlers(ctx, t.root, t.variant)
	return err != nil || len(cri.MissingFrom(served, t.handlerNames())) < len(t.handlerNames())
}

// Plan writes what Install would change, without changing anything.
func (c *Config) Plan(ctx context.Context, w io.Writer) error {
	root, err := hostfs.New(c.HostRoot)
	if err != nil {
		return err
	}
	t, err := c.detect(ctx, root)
	if err != nil {
		return err
	}
	// Every check Install makes before it writes, in the same order.
	prev, err := c.loadRecord(root)
	if err != nil {
		return err
	}
	if err := c.checkRecord(t, prev); err != nil {
		return err
	}
	plan, err := t.engine.PlanInstall(ctx, t.spec)
	if err != nil {
		return err
	}
	rep, err := artifacts.Plan(ctx, c.HostRoot, c.Payload, append(c.artifactOptions(), artifacts.WithHandlers(t.spec.Handlers))...)
	if err != nil {
		return withShimsHint(err)
	}
	fmt.Fprintf(w, "# %s %s, handlers %s\n", t.variant, t.version, strings.Join(t.handlerNames(), ", "))
	fmt.Fprintf(w, "# payload: %s\n", strings.TrimSpace(rep.String()))
	if plan.Empty() {
		fmt.Fprintln(w, "# runtime config: up to date")
	} else {
		fmt.Fprint(w, plan.Diff())
	}
	unit := t.variant.RuntimeUnit()
	switch {
	case !c.Restart || unit == "":
		fmt.Fprintln(w, "# restarts: none")
	case plan.Empty():
		fmt.Fprintf(w, "# restarts: %s only if it has not been restarted since its config was last written\n", unit)
	default:
		fmt.Fprintf(w, "# restarts: %s\n", unit)
	}
	return nil
}
