package systemd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
)

// DefaultSocket is systemd's private socket, relative to the host root.
const DefaultSocket = "/run/systemd/private"

// stateReadTimeout bounds the read of a unit's state that follows a failed
// or abandoned job, so that an error can still say what state the unit is
// in after the caller's context has ended.
const stateReadTimeout = 5 * time.Second

// bus is the part of go-systemd's connection this package uses; a fake
// stands in for it where a real systemd cannot produce a case on demand.
type bus interface {
	RestartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	GetUnitPropertiesContext(ctx context.Context, unit string) (map[string]any, error)
	GetUnitTypePropertyContext(ctx context.Context, unit, unitType, propertyName string) (*sddbus.Property, error)
	ReloadContext(ctx context.Context) error
	ResetFailedUnitContext(ctx context.Context, name string) error
	Close()
}

var _ bus = (*sddbus.Conn)(nil)

// Client is a connection to one host's systemd. It is safe for concurrent
// use. Close it when done.
type Client struct {
	bus bus
	log *slog.Logger
}

// Option configures Dial.
type Option func(*options)

type options struct {
	socket string
	log    *slog.Logger
}

// WithSocket connects to the socket at path instead of
// <host-root>/run/systemd/private. The path is used as given, not joined to
// the host root, for pods that mount the socket somewhere of their own.
func WithSocket(path string) Option {
	return func(o *options) { o.socket = path }
}

// WithLogger logs what the client does to l; the default, and nil,
// discard it.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// Dial connects to the systemd of the host whose root file system is at
// hostRoot ("/" on the host itself, "/host" in a pod that mounts it there),
// through its private socket. ctx bounds the connection set-up only. An
// empty or relative hostRoot is refused: it would be taken from the
// working directory.
func Dial(ctx context.Context, hostRoot string, opts ...Option) (*Client, error) {
	// Refused even with WithSocket: an empty or relative root is a
	// mistake of the caller's, whichever socket it then names.
	if err := hostfs.CheckRoot(hostRoot); err != nil {
		return nil, fmt.Errorf("systemd: %w", err)
	}
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if o.socket == "" {
		o.socket = filepath.Join(hostRoot, DefaultSocket)
	}
	conn, err := sddbus.NewConnection(func() (*godbus.Conn, error) {
		return dialPrivate(ctx, o.socket)
	})
	if err != nil {
		return nil, fmt.Errorf("systemd: connect to %s: %w", o.socket, err)
	}
	o.log.Debug("connected to systemd", "socket", o.socket)
	return &Client{bus: conn, log: o.log}, nil
}

// dialPrivate opens one authenticated connection to systemd's private
// socket. systemd is the peer itself there, so there is no bus daemon to say
// Hello to. The connection outlives ctx, which only bounds connect and auth.
func dialPrivate(ctx context.Context, socket string) (*godbus.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("%s is not a unix socket", socket)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = uc.SetDeadline(dl)
	}
	// Cancellation without a deadline: closing the socket unblocks Auth.
	stop := context.AfterFunc(ctx, func() { uc.Close() })
	defer stop()
	conn, err := godbus.DialUnix(uc)
	if err != nil {
		uc.Close()
		return nil, err
	}
	// EXTERNAL with the numeric uid: systemd checks it against the
	// socket's peer credentials; no user-name lookup is needed.
	if err := conn.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	if !stop() {
		conn.Close()
		return nil, ctx.Err()
	}
	_ = uc.SetDeadline(time.Time{})
	return conn, nil
}

// newClient wraps an existing bus; tests use it with a fake.
func newClient(b bus, log *slog.Logger) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{bus: b, log: log}
}

// errNotDialled is what the methods of a Client that Dial did not make
// return, instead of a nil pointer panic.
var errNotDialled = errors.New("systemd.Client used without systemd.Dial: connect with systemd.Dial")

// usable refuses a Client that Dial did not make (the zero value, or nil).
func (c *Client) usable() error {
	if c == nil || c.bus == nil || c.log == nil {
		return errNotDialled
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error {
	if err := c.usable(); err != nil {
		return err
	}
	c.bus.Close()
	return nil
}

// UnitStatus is a unit's state as systemd reports it.
type UnitStatus struct {
	// Name is the unit's name.
	Name string
	// LoadState is "loaded", "not-found", "masked", "error", ...
	LoadState string
	// ActiveState is "active", "activating", "failed", "inactive", ...
	ActiveState string
	// SubState is the unit type's finer state, e.g. "running", "auto-restart".
	SubState string
	// ActiveEnter is when the unit last entered the active state
	// (ActiveEnterTimestamp), zero if it never did since boot.
	ActiveEnter time.Time
	// NRestarts counts the automatic restarts of a service (Restart=), not
	// the ones asked for over D-Bus. Zero for other unit types.
	NRestarts uint32
}

// Active reports whether the unit is active.
func (s UnitStatus) Active() bool { return s.ActiveState == "active" }

// Status returns the unit's state. A unit systemd does not know yields a
// *UnitError wrapping ErrUnitNotFound, together with the status read.
func (c *Client) Status(ctx context.Context, unit string) (UnitStatus, error) {
	if err := c.usable(); err != nil {
		return UnitStatus{Name: unit}, err
	}
	st, err := c.status(ctx, unit)
	if err != nil {
		return st, &UnitError{Unit: unit, Op: "status", Err: err}
	}
	if st.LoadState == "not-found" {
		return st, unitErr(unit, "status", "", st, ErrUnitNotFound)
	}
	return st, nil
}

// Exists reports whether systemd knows the unit (its LoadState is anything
// but "not-found"). It is for choosing between units, e.g. k3s.service and
// k3s-agent.service; an error means systemd could not be asked.
func (c *Client) Exists(ctx context.Context, unit string) (bool, error) {
	if err := c.usable(); err != nil {
		return false, err
	}
	st, err := c.status(ctx, unit)
	if err != nil {
		return false, &UnitError{Unit: unit, Op: "status", Err: err}
	}
	return st.LoadState != "not-found", nil
}

func (c *Client) status(ctx context.Context, unit string) (UnitStatus, error) {
	if err := checkName(unit); err != nil {
		return UnitStatus{Name: unit}, err
	}
	// Reading a unit's object makes systemd load it, so a missing unit
	// reads as LoadState "not-found" rather than failing.
	props, err := c.bus.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return UnitStatus{Name: unit}, err
	}
	st := UnitStatus{
		Name:        unit,
		LoadState:   str(props["LoadState"]),
		ActiveState: str(props["ActiveState"]),
		SubState:    str(props["SubState"]),
	}
	if us, ok := props["ActiveEnterTimestamp"].(uint64); ok && us > 0 {
		st.ActiveEnter = time.UnixMicro(int64(us))
	}
	if strings.HasSuffix(unit, ".service") && st.LoadState == "loaded" {
		p, err := c.bus.GetUnitTypePropertyContext(ctx, unit, "Service", "NRestarts")
		if err != nil {
			return st, fmt.Errorf("read NRestarts: %w", err)
		}
		if n, ok := p.Value.Value().(uint32); ok {
			st.NRestarts = n
		}
	}
	return st, nil
}

// checkName refuses names that cannot be units, before they turn into odd
// D-Bus object paths.
func checkName(unit string) error {
	if unit == "" || !strings.Contains(unit, ".") || strings.ContainsAny(unit, "/ \t\n") {
		return fmt.Errorf("invalid unit name %q (want e.g. containerd.service)", unit)
	}
	return nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func unitErr(unit, op, result string, st UnitStatus, err error) *UnitError {
	return &UnitError{
		Unit: unit, Op: op, Result: result,
		LoadState: st.LoadState, ActiveState: st.ActiveState, SubState: st.SubState,
		Err: err,
	}
}

// Restart restarts the unit (starting it if it is stopped) and waits for
// systemd's job result, in these steps:
//
//  1. A unit systemd does not know, or cannot load, is a *UnitError
//     (ErrUnitNotFound, ErrUnitNotLoaded) and nothing is restarted.
//  2. A start, stop or reload someone else queued is waited for, up to 10 s;
//     after that the restart goes ahead anyway.
//  3. A restart job is queued (mode "replace") and its result awaited.
//  4. If the result is not "done" and the unit is left in the failed state
//     (typically systemd's start limit, which counts restarts asked for
//     over D-Bus), its failed state and start limit are reset, as
//     "systemctl reset-failed" does, and the restart is tried once more.
//  5. If the result is still not "done" but systemd scheduled an automatic
//     restart of its own (Restart= in the unit, shown as
//     activating/auto-restart), that one attempt is waited for, up to 15 s:
//     if it brings the unit up after the restart began, Restart returns
//     success with the unit's state.
//
// Success is a "done" job (or a successful automatic restart), and the
// unit's state afterwards is returned. Anything else, including a failed
// reset-failed and the end of ctx, is a *UnitError wrapping ErrJobFailed or
// the cause, with the job result and the state the unit was left in. When
// ctx ends first the job keeps running in systemd; only the wait is
// abandoned.
func (c *Client) Restart(ctx context.Context, unit string) (UnitStatus, error) {
	if err := c.usable(); err != nil {
		return UnitStatus{Name: unit}, err
	}
	before, err := c.status(ctx, unit)
	if err != nil {
		return before, &UnitError{Unit: unit, Op: "restart", Err: err}
	}
	switch before.LoadState {
	case "loaded":
	case "not-found":
		return before, unitErr(unit, "restart", "", before, ErrUnitNotFound)
	default:
		return before, unitErr(unit, "restart", "", before, ErrUnitNotLoaded)
	}

	if before, err = c.settle(ctx, unit, before); err != nil {
		return before, &UnitError{Unit: unit, Op: "restart", Err: err}
	}
	start := time.Now()
	c.log.Info("restarting unit", "unit", unit, "activeState", before.ActiveState, "activeEnter", before.ActiveEnter)
	result, err := c.restartJob(ctx, unit)
	if err == nil && result != "done" && c.leftFailed(ctx, unit) {
		// systemd refuses a start after StartLimitBurst starts within
		// StartLimitIntervalSec (5 in 10 s by default), counting the
		// restarts asked for over D-Bus, and leaves the unit failed: a
		// runtime restarted for an install, its rollback and a cleanup in
		// quick succession, or one that crash-looped on a bad config before
		// a rollback, would stay down. The unit's Result does not tell:
		// it keeps an earlier failure ("exit-code") when there was one. The
		// limit is there to stop a unit's own crash loop, not a deliberate
		// restart: reset the failed state and the limit, as "systemctl
		// reset-failed" does, and try once more.
		c.log.Warn("the restart left the unit failed; resetting its failed state and start limit and trying once more", "unit", unit, "result", result)
		if err := c.bus.ResetFailedUnitContext(ctx, unit); err != nil {
			return c.failure(ctx, unit, "restart", result, fmt.Errorf("reset-failed: %w", err))
		}
		result, err = c.restartJob(ctx, unit)
	}
	if err != nil {
		return c.failure(ctx, unit, "restart", "", err)
	}
	if result != "done" {
		if after, ok := c.autoRestarted(ctx, unit, start); ok {
			c.log.Warn("the restart failed, but systemd's own automatic restart brought the unit up", "unit", unit, "result", result, "activeEnter", after.ActiveEnter)
			return after, nil
		}
		return c.failure(ctx, unit, "restart", result, ErrJobFailed)
	}
	after, err := c.status(ctx, unit)
	if err != nil {
		return after, &UnitError{Unit: unit, Op: "restart", Result: result, Err: fmt.Errorf("read state after restart: %w", err)}
	}
	c.log.Info("restarted unit", "unit", unit, "took", time.Since(start), "activeState", after.ActiveState, "subState", after.SubState, "activeEnter", after.ActiveEnter)
	return after, nil
}

// restartJob queues a restart job and returns its result; err is set when
// the job could not be queued or ctx ended first.
func (c *Client) restartJob(ctx context.Context, unit string) (string, error) {
	// Buffered: go-systemd sends the result while holding its lock, and
	// nobody reads if we stop waiting.
	done := make(chan string, 1)
	if _, err := c.bus.RestartUnitContext(ctx, unit, "replace", done); err != nil {
		return "", err
	}
	select {
	case result := <-done:
		return result, nil
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for the job: %w", ctx.Err())
	}
}

// autoRestartWait bounds how long a failed restart waits for systemd's own
// automatic restart (Restart= in the unit; containerd's and CRI-O's units
// wait 5 s before it).
const autoRestartWait = 15 * time.Second

// autoRestarted waits, when a restart job failed but systemd scheduled an
// automatic restart of its own (activating/auto-restart), for that one
// attempt, and reports whether it brought the unit up after since. A start
// can fail for a passing reason (seen: systemd could not attach the new
// process to the unit's cgroup right after a quick stop); a runtime that
// rejects its config fails again and is reported as failed.
func (c *Client) autoRestarted(ctx context.Context, unit string, since time.Time) (UnitStatus, bool) {
	st, err := c.status(ctx, unit)
	if err != nil || st.ActiveState != "activating" || st.SubState != "auto-restart" {
		return st, false
	}
	c.log.Info("the restart failed; waiting for systemd's automatic restart of the unit", "unit", unit)
	// NRestarts counts systemd's automatic restarts. It moves when systemd
	// queues its attempt, while the unit still shows auto-restart for a
	// moment; an attempt that failed shows auto-restart again for the whole
	// RestartSec. So the failure is taken as seen only on two polls in a row.
	first := st.NRestarts
	failedPolls := 0
	deadline := time.Now().Add(autoRestartWait)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return st, false
		case <-time.After(100 * time.Millisecond):
		}
		if st, err = c.status(ctx, unit); err != nil {
			return st, false
		}
		switch {
		case st.ActiveState == "active":
			return st, st.ActiveEnter.After(since)
		case st.ActiveState == "failed":
			return st, false
		case st.NRestarts > first && st.SubState == "auto-restart":
			if failedPolls++; failedPolls >= 2 {
				return st, false // the automatic attempt failed too
			}
			continue
		}
		failedPolls = 0
	}
	return st, false
}

// leftFailed reports whether the unit is in the failed state (not, say,
// waiting for an automatic restart).
func (c *Client) leftFailed(ctx context.Context, unit string) bool {
	st, err := c.status(ctx, unit)
	return err == nil && st.ActiveState == "failed"
}

// A restart waits for a start or stop that is already under way: a
// runtime on a busy node with hundreds of containers can take tens of
// seconds to start, and restarting it in the middle would start it all
// over. It waits as long as systemd itself gives that start or stop (the
// unit's TimeoutStartSec or TimeoutStopSec, 90 s by default, after which
// systemd fails it), at most settleMax; a unit that sets no such timeout
// (k3s sets TimeoutStartSec=0) gets settleUnbounded, as a start that never
// ends is what a restart must replace.
const (
	settleMax       = 5 * time.Minute
	settleUnbounded = 30 * time.Second
)

// settleFor is how long settle waits for st's start or stop to end.
func (c *Client) settleFor(ctx context.Context, unit string, st UnitStatus) time.Duration {
	prop := "TimeoutStartUSec"
	if st.ActiveState == "deactivating" {
		prop = "TimeoutStopUSec"
	}
	if !strings.HasSuffix(unit, ".service") {
		return settleUnbounded
	}
	p, err := c.bus.GetUnitTypePropertyContext(ctx, unit, "Service", prop)
	if err != nil {
		return settleUnbounded
	}
	us, ok := p.Value.Value().(uint64)
	if !ok || us == 0 || us == math.MaxUint64 {
		return settleUnbounded
	}
	return min(time.Duration(us)*time.Microsecond+5*time.Second, settleMax)
}

// settle waits while the unit is starting, stopping or reloading under a
// job someone else queued (typically the restart of an installer that was
// killed before it saw the result), and returns its state afterwards.
// Restarting it in the middle would stop a half-started daemon, which
// containerd answers by exiting with an error. A unit waiting for its
// automatic restart (Restart=) is not waited for: that can take long and
// restarting it is what it needs. After settleFor the restart goes ahead
// anyway.
func (c *Client) settle(ctx context.Context, unit string, st UnitStatus) (UnitStatus, error) {
	busy := func(st UnitStatus) bool {
		switch st.ActiveState {
		case "activating":
			return st.SubState != "auto-restart"
		case "deactivating", "reloading":
			return true
		}
		return false
	}
	if !busy(st) {
		return st, nil
	}
	wait := c.settleFor(ctx, unit, st)
	c.log.Info("waiting for the unit's own start or stop to finish before restarting it", "unit", unit, "activeState", st.ActiveState, "subState", st.SubState, "atMost", wait)
	deadline := time.Now().Add(wait)
	for busy(st) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		var err error
		if st, err = c.status(ctx, unit); err != nil {
			return st, err
		}
	}
	return st, nil
}

// failure builds the error for a restart that did not end in "done", with
// the unit's state read afterwards. The read gets its own short deadline,
// detached from ctx, so that it still happens when ctx has ended.
func (c *Client) failure(ctx context.Context, unit, op, result string, cause error) (UnitStatus, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stateReadTimeout)
	defer cancel()
	st, err := c.status(rctx, unit)
	if err != nil {
		c.log.Warn("could not read unit state after failure", "unit", unit, "err", err)
	}
	e := unitErr(unit, op, result, st, cause)
	c.log.Warn("unit operation failed", "unit", unit, "op", op, "result", result, "activeState", st.ActiveState, "subState", st.SubState, "err", cause)
	return st, e
}

// Decision says what RestartIfNeeded did and why.
type Decision struct {
	// Restarted is true when a restart was asked for, even if it failed.
	Restarted bool
	// Reason explains the decision in words fit for a log line.
	Reason string
}

// RestartIfNeeded restarts the unit unless it has been active since after
// configWritten, the time its configuration was last written (typically the
// file's modification time). An installer that was killed by its own
// restart and runs again therefore finds the runtime already running the
// new configuration and leaves it alone. A unit that is not active is
// always restarted.
func (c *Client) RestartIfNeeded(ctx context.Context, unit string, configWritten time.Time) (UnitStatus, Decision, error) {
	if err := c.usable(); err != nil {
		return UnitStatus{Name: unit}, Decision{}, err
	}
	st, err := c.Status(ctx, unit)
	if err != nil {
		var ue *UnitError
		if errors.As(err, &ue) {
			ue.Op = "restart"
		}
		return st, Decision{}, err
	}
	// A start already under way (the restart of a killed installer) may
	// bring the unit up on the new config: wait for it, then decide.
	if st, err = c.settle(ctx, unit, st); err != nil {
		return st, Decision{}, &UnitError{Unit: unit, Op: "restart", Err: err}
	}
	if st.Active() && st.ActiveEnter.After(configWritten) {
		d := Decision{Reason: fmt.Sprintf("active since %s, after the configuration was written at %s",
			st.ActiveEnter.UTC().Format(time.RFC3339Nano), configWritten.UTC().Format(time.RFC3339Nano))}
		c.log.Info("restart not needed", "unit", unit, "reason", d.Reason)
		return st, d, nil
	}
	reason := fmt.Sprintf("%s since %s, configuration written at %s", st.ActiveState,
		st.ActiveEnter.UTC().Format(time.RFC3339Nano), configWritten.UTC().Format(time.RFC3339Nano))
	after, err := c.Restart(ctx, unit)
	return after, Decision{Restarted: true, Reason: reason}, err
}

// DaemonReload makes systemd re-read its unit files (systemctl
// daemon-reload) and returns once it has.
func (c *Client) DaemonReload(ctx context.Context) error {
	if err := c.usable(); err != nil {
		return err
	}
	if err := c.bus.ReloadContext(ctx); err != nil {
		return fmt.Errorf("systemd: daemon-reload: %w", err)
	}
	c.log.Info("reloaded systemd unit files")
	return nil
}
