package installer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/artifacts"
	"github.com/kata-deploy/kata-deploy/internal/cri"
	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/nodelabel"
)

// Install installs Kata on the node: payload, runtime config, restart when
// needed, verification, label. A restart or verification that fails puts
// the runtime config back, restarts the runtime again and leaves the node
// unlabelled. Running it again on an installed node changes nothing.
func (c *Config) Install(ctx context.Context) (err error) {
	unlock, err := c.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	start := time.Now()
	c.event(ctx, nodelabel.ReasonInstallStarted, "installing Kata Containers")
	defer func() {
		if err != nil {
			c.event(context.WithoutCancel(ctx), nodelabel.ReasonInstallFailed, "%v", err)
		}
	}()
	t, err := c.detect(ctx)
	if err != nil {
		return err
	}
	hadPayload := true
	if _, err := artifacts.Status(ctx, c.HostRoot, c.artifactOptions()...); errors.Is(err, artifacts.ErrNotInstalled) {
		hadPayload = false
	}
	// The config is planned first: a config we cannot edit must fail the
	// install before anything is written.
	plan, err := t.engine.PlanInstall(ctx, t.spec)
	if err != nil {
		return err
	}
	rep, err := artifacts.Install(ctx, c.HostRoot, c.Payload, c.artifactOptions()...)
	if err != nil {
		return fmt.Errorf("install payload: %w", err)
	}
	c.log().Info("payload installed", "dest", rep.Dest, "added", len(rep.Added), "changed", len(rep.Changed), "removed", len(rep.Removed))
	for _, h := range t.spec.Handlers {
		if got := rep.Shims[h.Shim]; got != h.ConfigPath {
			c.undoPayload(ctx, hadPayload)
			has := slices.Sorted(maps.Keys(rep.Shims))
			if got == "" {
				return fmt.Errorf("the payload %s has no Kata config for shim %s (%s): pick --shims from those it has: %s", c.Payload, h.Shim, h.ConfigPath, strings.Join(has, ","))
			}
			return fmt.Errorf("handler %s needs %s, but the payload has shim %s's config at %s: pick --shims from those it has where kata-deploy expects them: %s", h.Name, h.ConfigPath, h.Shim, got, strings.Join(has, ","))
		}
	}
	if err := t.engine.Apply(ctx, plan); err != nil {
		c.undoPayload(ctx, hadPayload)
		return fmt.Errorf("register Kata with %s: %w", t.variant, err)
	}
	if err := c.restartAndVerify(ctx, t); err != nil {
		return c.rollback(ctx, t, hadPayload, err)
	}
	if c.Node != nil {
		if err := c.Node.SetKataState(ctx, nodelabel.KataInstalled); err != nil {
			return err
		}
	}
	c.event(ctx, nodelabel.ReasonInstallSucceeded, "Kata Containers installed in %s: handlers %s on %s %s",
		time.Since(start).Round(time.Millisecond), strings.Join(t.handlerNames(), ", "), t.variant, t.version)
	return nil
}

// restartAndVerify restarts the runtime unless it already runs the current
// config, then checks it serves the handlers.
func (c *Config) restartAndVerify(ctx context.Context, t *target) error {
	unit := t.variant.RuntimeUnit()
	if !c.Restart && unit != "" {
		// The runtime reads the new config at its next restart; there is
		// nothing live to verify yet.
		c.log().Warn("not restarting the runtime (restart disabled): it serves the Kata handlers after its next restart", "unit", unit)
		return nil
	}
	if unit != "" {
		written, err := t.engine.ConfigWritten()
		if err != nil {
			return err
		}
		sd, err := c.systemd(ctx)
		if err != nil {
			return err
		}
		defer sd.Close()
		st, decision, err := sd.RestartIfNeeded(ctx, unit, written)
		if err != nil {
			return err
		}
		c.log().Info("runtime unit", "unit", unit, "restarted", decision.Restarted, "why", decision.Reason, "active_since", st.ActiveEnter)
	}
	return c.verify(ctx, t)
}

// rollback undoes a failed install and returns cause, with anything the
// rollback itself could not do.
func (c *Config) rollback(ctx context.Context, t *target, hadPayload bool, cause error) error {
	ctx = context.WithoutCancel(ctx)
	c.log().Error("install failed; putting the runtime config back", "err", cause)
	errs := []error{cause}
	if plan, err := t.engine.PlanUninstall(ctx); err != nil {
		errs = append(errs, fmt.Errorf("rollback: %w", err))
	} else if err := t.engine.Apply(ctx, plan); err != nil {
		errs = append(errs, fmt.Errorf("rollback: %w", err))
	}
	if unit := t.variant.RuntimeUnit(); c.Restart && unit != "" {
		if err := c.restart(ctx, unit); err != nil {
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

// answers waits until the runtime answers CRI Status: a restart job that
// succeeded only says the unit is active, and a runtime can be active with
// its CRI plugin failed (containerd 1.x).
func (c *Config) answers(ctx context.Context, t *target) error {
	return c.untilCRI(ctx, t, 250*time.Millisecond, func(ctx context.Context, client *cri.Client) error {
		if _, err := client.Handlers(ctx); err != nil {
			return fmt.Errorf("the runtime does not answer on %s after the restart: %w", t.variant.CRISocket(), err)
		}
		return nil
	})
}

func (c *Config) undoPayload(ctx context.Context, hadPayload bool) {
	if hadPayload {
		return
	}
	if _, err := artifacts.Uninstall(context.WithoutCancel(ctx), c.HostRoot, c.artifactOptions()...); err != nil {
		c.log().Error("cannot remove the payload this run installed", "err", err)
	}
}

func (c *Config) restart(ctx context.Context, unit string) error {
	sd, err := c.systemd(ctx)
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
func (c *Config) Uninstall(ctx context.Context) error {
	unlock, err := c.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	t, err := c.detect(ctx)
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
	if err := t.engine.Apply(ctx, plan); err != nil {
		return fmt.Errorf("restore %s config: %w", t.variant, err)
	}
	if unit := t.variant.RuntimeUnit(); c.Restart && unit != "" && c.servesAny(ctx, t) {
		if err := c.restart(ctx, unit); err != nil {
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
	c.log().Info("Kata Containers uninstalled", "variant", t.variant)
	return nil
}

// servesAny reports whether the runtime still serves any Kata handler, so
// that a repeated uninstall restarts it only if an earlier one stopped
// before the restart. When the runtime cannot be asked, it is restarted.
func (c *Config) servesAny(ctx context.Context, t *target) bool {
	client, err := c.criClient(t.variant)
	if err != nil {
		return true
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	missing, err := client.Missing(ctx, t.handlerNames())
	return err != nil || len(missing) < len(t.handlerNames())
}

// Plan writes what Install would change, without changing anything.
func (c *Config) Plan(ctx context.Context, w io.Writer) error {
	t, err := c.detect(ctx)
	if err != nil {
		return err
	}
	rep, err := artifacts.Plan(ctx, c.HostRoot, c.Payload, c.artifactOptions()...)
	if err != nil {
		return err
	}
	plan, err := t.engine.PlanInstall(ctx, t.spec)
	if err != nil {
		return err
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

// Status is what is installed on the host.
type Status struct {
	Runtime   string            `json:"runtime"`
	Version   string            `json:"version"`
	Installed bool              `json:"installed"`
	Payload   *artifacts.Record `json:"payload,omitempty"`
	Config    []string          `json:"config,omitempty"` // host files a config uninstall would change
	Handlers  []string          `json:"handlers,omitempty"`
}

// Status reports what kata-deploy has installed on the host.
func (c *Config) Status(ctx context.Context) (*Status, error) {
	t, err := c.detect(ctx)
	if err != nil {
		return nil, err
	}
	s := &Status{Runtime: string(t.variant), Version: t.version.String(), Handlers: t.handlerNames()}
	rec, err := artifacts.Status(ctx, c.HostRoot, c.artifactOptions()...)
	switch {
	case errors.Is(err, artifacts.ErrNotInstalled):
	case err != nil:
		return nil, err
	default:
		s.Payload = rec
	}
	undo, err := t.engine.PlanUninstall(ctx)
	if err != nil {
		return nil, err
	}
	s.Config = undo.Paths()
	s.Installed = s.Payload != nil || len(s.Config) > 0
	return s, nil
}

// Write writes the status as "text" (for a person) or "json".
func (s *Status) Write(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	case "text", "":
		s.writeText(w)
		return nil
	}
	return fmt.Errorf("unknown output format %q (want text or json)", format)
}

func (s *Status) writeText(w io.Writer) {
	fmt.Fprintf(w, "runtime:   %s %s\n", s.Runtime, s.Version)
	if !s.Installed {
		fmt.Fprintln(w, "installed: no")
		return
	}
	fmt.Fprintln(w, "installed: yes")
	if s.Payload != nil {
		fmt.Fprintf(w, "payload:   %s (%s, %d entries)\n", s.Payload.Dest, s.Payload.Layout, len(s.Payload.Files))
	}
	for _, p := range s.Config {
		fmt.Fprintf(w, "config:    %s\n", p)
	}
	fmt.Fprintf(w, "handlers:  %s\n", strings.Join(s.Handlers, ", "))
}

// Cleanup is the cleanup DaemonSet's work after an uninstall: remove both
// labels, restart the runtime and the kubelet.
func (c *Config) Cleanup(ctx context.Context) error {
	root, err := hostfs.New(c.HostRoot)
	if err != nil {
		return err
	}
	t, _, err := c.detectVariant(ctx, root)
	if err != nil {
		return err
	}
	if c.Restart {
		for _, unit := range []string{t.RuntimeUnit(), t.KubeletUnit()} {
			if unit == "" {
				continue
			}
			if err := c.restartIfExists(ctx, unit); err != nil {
				return err
			}
		}
	}
	if c.Node != nil {
		if err := c.Node.RemoveLabels(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) restartIfExists(ctx context.Context, unit string) error {
	sd, err := c.systemd(ctx)
	if err != nil {
		return err
	}
	defer sd.Close()
	ok, err := sd.Exists(ctx, unit)
	if err != nil {
		return err
	}
	if !ok {
		c.log().Info("no such unit; not restarting", "unit", unit)
		return nil
	}
	st, err := sd.Restart(ctx, unit)
	if err != nil {
		return err
	}
	c.log().Info("restarted", "unit", unit, "active_since", st.ActiveEnter)
	return nil
}
