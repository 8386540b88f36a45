// Package cleanup is the kata-cleanup command's work on one node after an
// uninstall: restart the runtime and the kubelet, remove both kata-deploy
// labels, and forget the uninstalled installs. It needs the host root,
// systemd and the Node, and none of the install machinery (payload, config
// engines, CRI), so the cleanup binary does not link it.
package cleanup

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/kata-deploy/kata-deploy/cmd/internal/hostnode"
	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/internal/noderecord"
	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/kata-deploy/kata-deploy/systemd"
)

// Config is what one node's cleanup needs.
type Config struct {
	HostRoot string
	// Runtime is a runtime.Variant name, or "auto"; the node's install
	// records override it.
	Runtime string
	Restart bool // restart the runtime and the kubelet through systemd
	// SystemdSocket is the host path of systemd's private socket (under
	// HostRoot; systemd.DefaultSocket when empty).
	SystemdSocket string

	// Node is nil when the cleanup must not touch the API server: it
	// reads the Node's runtime and writes its labels and events.
	Node *nodelabel.Client
	Log  *slog.Logger

	// Dial connects to systemd's private socket (a path on this machine,
	// resolved under HostRoot). Nil dials the real one; tests set fakes.
	Dial func(ctx context.Context, socket string) (Systemd, error)
}

// Systemd is what the cleanup needs of the host's systemd.
type Systemd interface {
	Restart(ctx context.Context, unit string) (systemd.UnitStatus, error)
	Exists(ctx context.Context, unit string) (bool, error)
	Close() error
}

var _ Systemd = (*systemd.Client)(nil)

func (c *Config) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c.Log
}

func (c *Config) event(ctx context.Context, reason nodelabel.Reason, format string, args ...any) {
	if c.Node == nil {
		return
	}
	if err := c.Node.RecordEvent(ctx, reason, fmt.Sprintf(format, args...)); err != nil {
		c.log().Warn("cannot record event on the Node", "reason", reason, "err", err)
	}
}

// Run is the cleanup DaemonSet's work after an uninstall: restart the
// runtime and the kubelet, remove both labels, and forget the uninstalled
// installs. The runtime is the one the node's records name (the flags only
// count on a node without records), and a node whose records say Kata is
// still installed is refused: its uninstall did not finish, and resetting
// its labels would hide that.
func (c *Config) Run(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			c.event(context.WithoutCancel(ctx), nodelabel.ReasonCleanupFailed, "%v", err)
		}
	}()
	root, err := hostfs.New(c.HostRoot)
	if err != nil {
		return err
	}
	recs, err := noderecord.LoadAll(root)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.State != noderecord.Uninstalled {
			//lint:ignore ST1005 "Kata" is a proper noun (the project's name), not a capitalised word.
			return fmt.Errorf("Kata is still installed in %s (%s, recorded in %s): its uninstall did not finish; run kata-installer uninstall on the node (it finds the install by itself), then the cleanup runs", r.Dest, r.State, noderecord.PathFor(r.Suffix))
		}
		if r.Runtime.Variant != recs[0].Runtime.Variant {
			return fmt.Errorf("the node's records name two runtimes, %s and %s: clean up by hand", recs[0].Runtime.Variant, r.Runtime.Variant)
		}
	}
	want, node := c.Runtime, c.Node
	if len(recs) > 0 {
		if want != "" && want != "auto" && want != recs[0].Runtime.Variant {
			c.log().Warn("acting on the runtime the node records, not on the flag", "flag", "runtime", "given", want, "recorded", recs[0].Runtime.Variant)
		}
		// The records name the runtime: what the Node says of it (nothing
		// useful while the runtime restarts) is not needed.
		want, node = recs[0].Runtime.Variant, nil
	}
	t, _, err := hostnode.Variant(ctx, root, node, want, c.log())
	if err != nil {
		return err
	}
	var restarted []string
	if c.Restart {
		for _, unit := range []string{t.RuntimeUnit(), t.KubeletUnit()} {
			if unit == "" {
				continue
			}
			ok, err := c.restartIfExists(ctx, root, unit)
			if err != nil {
				return err
			}
			if ok {
				restarted = append(restarted, unit)
			}
		}
	}
	if c.Node != nil {
		if err := c.Node.RemoveLabels(ctx); err != nil {
			return err
		}
	}
	for _, r := range recs {
		if err := noderecord.Remove(root, r); err != nil {
			return err
		}
	}
	if len(restarted) == 0 {
		restarted = []string{"nothing"}
	}
	c.event(ctx, nodelabel.ReasonCleanupSucceeded, "node reset after the Kata uninstall: kata-deploy labels removed, restarted: %s", strings.Join(restarted, ", "))
	return nil
}

func (c *Config) systemd(ctx context.Context, root *hostfs.Root) (Systemd, error) {
	socket, err := hostnode.SystemdSocket(root, c.SystemdSocket)
	if err != nil {
		return nil, err
	}
	if c.Dial != nil {
		return c.Dial(ctx, socket)
	}
	sd, err := systemd.Dial(ctx, c.HostRoot, systemd.WithSocket(socket), systemd.WithLogger(c.log()))
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return sd, nil
}

func (c *Config) restartIfExists(ctx context.Context, root *hostfs.Root, unit string) (bool, error) {
	sd, err := c.systemd(ctx, root)
	if err != nil {
		return false, err
	}
	defer sd.Close()
	ok, err := sd.Exists(ctx, unit)
	if err != nil {
		return false, err
	}
	if !ok {
		c.log().Info("no such unit; not restarting", "unit", unit)
		return false, nil
	}
	st, err := sd.Restart(ctx, unit)
	if err != nil {
		return false, err
	}
	c.log().Info("restarted", "unit", unit, "active_since", st.ActiveEnter)
	return true, nil
}
