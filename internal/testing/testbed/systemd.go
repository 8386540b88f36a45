package testbed

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Systemd connects from the host to the node's systemd through the node's D-Bus system
// bus (BusSocket). The bus daemon relays for callers outside the node's PID namespace,
// which /run/systemd/private does not accept. The connection closes when ctx ends; the
// caller closes it when done.
func (n *Node) Systemd(ctx context.Context) (*sddbus.Conn, error) {
	addr := "unix:path=" + n.BusSocket()
	conn, err := sddbus.NewConnection(func() (*dbus.Conn, error) {
		c, err := dbus.Dial(addr, dbus.WithContext(ctx))
		if err != nil {
			return nil, err
		}
		if err := c.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			c.Close()
			return nil, err
		}
		if err := c.Hello(); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: connect to systemd over %s: %w", n.name, addr, err)
	}
	return conn, nil
}

// ActiveEnterTimestamp is when unit last entered the active state (systemd's
// ActiveEnterTimestamp, microsecond precision); zero if it never did.
func (n *Node) ActiveEnterTimestamp(ctx context.Context, unit string) (time.Time, error) {
	conn, err := n.Systemd(ctx)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close()
	p, err := conn.GetUnitPropertyContext(ctx, unit, "ActiveEnterTimestamp")
	if err != nil {
		return time.Time{}, fmt.Errorf("node %s: %s ActiveEnterTimestamp: %w", n.name, unit, err)
	}
	us, ok := p.Value.Value().(uint64)
	if !ok {
		return time.Time{}, fmt.Errorf("node %s: %s ActiveEnterTimestamp has type %s", n.name, unit, p.Value.Signature())
	}
	if us == 0 {
		return time.Time{}, nil
	}
	return time.UnixMicro(int64(us)), nil
}

// NRestarts is how often systemd restarted the service automatically (Restart=), not
// counting restarts asked for over D-Bus.
func (n *Node) NRestarts(ctx context.Context, unit string) (int, error) {
	conn, err := n.Systemd(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	p, err := conn.GetServicePropertyContext(ctx, unit, "NRestarts")
	if err != nil {
		return 0, fmt.Errorf("node %s: %s NRestarts: %w", n.name, unit, err)
	}
	v, ok := p.Value.Value().(uint32)
	if !ok {
		return 0, fmt.Errorf("node %s: %s NRestarts has type %s", n.name, unit, p.Value.Signature())
	}
	return int(v), nil
}

// UnitActiveState is the unit's ActiveState (active, activating, failed, ...).
func (n *Node) UnitActiveState(ctx context.Context, unit string) (string, error) {
	conn, err := n.Systemd(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	p, err := conn.GetUnitPropertyContext(ctx, unit, "ActiveState")
	if err != nil {
		return "", fmt.Errorf("node %s: %s ActiveState: %w", n.name, unit, err)
	}
	s, _ := p.Value.Value().(string)
	return s, nil
}

// RestartUnit restarts unit from the host over the node's system bus and waits for the
// job's result; anything but "done" is an error. It is test tooling: the product
// restarts runtimes from inside the node (see RunAsPod).
func (n *Node) RestartUnit(ctx context.Context, unit string) error {
	conn, err := n.Systemd(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch := make(chan string, 1)
	if _, err := conn.RestartUnitContext(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("node %s: restart %s: %w", n.name, unit, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("node %s: restart %s: job %s", n.name, unit, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node %s: restart %s: %w", n.name, unit, ctx.Err())
	}
}
