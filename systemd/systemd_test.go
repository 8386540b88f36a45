package systemd

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// fakeBus stands in for systemd where a real one cannot produce the case on
// demand (a job that never finishes, a D-Bus error). The real behaviour is
// covered by the node tests in node_test.go.
type fakeBus struct {
	mu       sync.Mutex
	props    map[string]map[string]any // unit -> Unit properties
	restart  func(unit string, ch chan<- string) error
	restarts []string
	reloads  int
	resets   []string
	// nrestarts is the NRestarts property (systemd's automatic restarts).
	nrestarts uint32
}

func (f *fakeBus) RestartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	f.mu.Lock()
	f.restarts = append(f.restarts, name+":"+mode)
	f.mu.Unlock()
	return 7, f.restart(name, ch)
}

func (f *fakeBus) GetUnitPropertiesContext(ctx context.Context, unit string) (map[string]any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.props[unit]
	if !ok {
		return map[string]any{"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead", "ActiveEnterTimestamp": uint64(0)}, nil
	}
	out := map[string]any{}
	for k, v := range p {
		out[k] = v
	}
	return out, nil
}

func (f *fakeBus) GetUnitTypePropertyContext(ctx context.Context, unit, unitType, name string) (*sddbus.Property, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &sddbus.Property{Name: name, Value: godbus.MakeVariant(3 + f.nrestarts)}, nil
}

// autoRestart plays systemd's automatic restart of a unit whose start
// failed: after a moment it counts the attempt and either brings the unit
// up or leaves it waiting for the next attempt.
func (f *fakeBus) autoRestart(unit string, succeeds bool) {
	time.AfterFunc(150*time.Millisecond, func() {
		f.mu.Lock()
		f.nrestarts++
		f.mu.Unlock()
		if succeeds {
			f.set(unit, "active", "running", time.Now())
		} else {
			f.set(unit, "activating", "auto-restart", time.Time{})
		}
	})
}

func (f *fakeBus) ResetFailedUnitContext(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resets = append(f.resets, name)
	return nil
}

func (f *fakeBus) ReloadContext(ctx context.Context) error { f.reloads++; return nil }
func (f *fakeBus) Close()                                  {}

func (f *fakeBus) set(unit, active, sub string, enter time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.props == nil {
		f.props = map[string]map[string]any{}
	}
	f.props[unit] = map[string]any{"LoadState": "loaded", "ActiveState": active, "SubState": sub, "ActiveEnterTimestamp": uint64(enter.UnixMicro())}
}

func TestRestartDone(t *testing.T) {
	f := &fakeBus{}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	f.set("containerd.service", "active", "running", t0)
	t1 := time.Now().Truncate(time.Microsecond)
	f.restart = func(unit string, ch chan<- string) error {
		f.set(unit, "active", "running", t1)
		ch <- "done"
		return nil
	}
	st, err := newClient(f, nil).Restart(context.Background(), "containerd.service")
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(f.restarts, []string{"containerd.service:replace"}))
	assert.Check(t, st.ActiveEnter.Equal(t1))
	assert.Check(t, is.Equal(st.NRestarts, uint32(3)))
}

func TestRestartJobFailed(t *testing.T) {
	f := &fakeBus{}
	f.set("crio.service", "active", "running", time.Now())
	f.restart = func(unit string, ch chan<- string) error {
		f.set(unit, "activating", "auto-restart", time.Now())
		f.autoRestart(unit, false)
		ch <- "failed"
		return nil
	}
	start := time.Now()
	_, err := newClient(f, nil).Restart(context.Background(), "crio.service")
	assert.Check(t, time.Since(start) < autoRestartWait, "gave up only at the deadline, not when systemd's own attempt failed")
	var ue *UnitError
	assert.Assert(t, errors.As(err, &ue))
	assert.Check(t, errors.Is(err, ErrJobFailed))
	assert.Check(t, is.Equal(ue.Result, "failed"))
	assert.Check(t, is.Equal(ue.ActiveState, "activating"))
	assert.Check(t, is.Equal(ue.SubState, "auto-restart"))
	assert.Check(t, is.Equal(err.Error(), `systemd: restart crio.service: job result "failed" (unit now loaded/activating/auto-restart)`))
}

// TestRestartAutoRestartRecovers: a start that failed for a passing reason,
// which systemd's own automatic restart (Restart=always) then gets right,
// is a successful restart.
func TestRestartAutoRestartRecovers(t *testing.T) {
	f := &fakeBus{}
	f.set("containerd.service", "active", "running", time.Now().Add(-time.Hour))
	f.restart = func(unit string, ch chan<- string) error {
		f.set(unit, "activating", "auto-restart", time.Time{})
		f.autoRestart(unit, true)
		ch <- "failed"
		return nil
	}
	st, err := newClient(f, nil).Restart(context.Background(), "containerd.service")
	assert.NilError(t, err)
	assert.Check(t, st.Active())
	assert.Check(t, is.Equal(st.NRestarts, uint32(4)))
}

// TestRestartLeftFailed: a restart that leaves the unit failed (systemd's
// start limit, node_test.go shows it for real) is retried once after a
// reset-failed.
func TestRestartLeftFailed(t *testing.T) {
	for _, again := range []bool{false, true} {
		f := &fakeBus{}
		f.set("containerd.service", "active", "running", time.Now())
		first := true
		f.restart = func(unit string, ch chan<- string) error {
			hit := first || again
			first = false
			if hit {
				f.set(unit, "failed", "failed", time.Time{})
				ch <- "failed"
				return nil
			}
			f.set(unit, "active", "running", time.Now())
			ch <- "done"
			return nil
		}
		st, err := newClient(f, nil).Restart(context.Background(), "containerd.service")
		// One reset and one more try, never a loop.
		assert.Check(t, is.DeepEqual(f.resets, []string{"containerd.service"}))
		assert.Check(t, is.Len(f.restarts, 2))
		if again {
			assert.Check(t, errors.Is(err, ErrJobFailed))
			continue
		}
		assert.NilError(t, err)
		assert.Check(t, st.Active())
	}
}

func TestRestartContextEnds(t *testing.T) {
	f := &fakeBus{}
	f.set("containerd.service", "active", "running", time.Now())
	f.restart = func(unit string, ch chan<- string) error {
		f.set(unit, "deactivating", "stop-sigterm", time.Now())
		return nil // the job never finishes
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := newClient(f, nil).Restart(ctx, "containerd.service")
	assert.Check(t, time.Since(start) < 2*time.Second)
	assert.Check(t, errors.Is(err, context.DeadlineExceeded), err)
	var ue *UnitError
	assert.Assert(t, errors.As(err, &ue))
	// The state is read after the deadline, on a context of its own.
	assert.Check(t, is.Equal(ue.ActiveState, "deactivating"))
	assert.Check(t, is.ErrorContains(err, "waiting for the job"))
}

func TestRestartMissingUnit(t *testing.T) {
	f := &fakeBus{restart: func(string, chan<- string) error { t.Fatal("restart of a missing unit"); return nil }}
	_, err := newClient(f, nil).Restart(context.Background(), "k3s-agent.service")
	assert.Check(t, errors.Is(err, ErrUnitNotFound))
	assert.Check(t, is.Equal(err.Error(), "systemd: restart k3s-agent.service: unit not found (unit now not-found/inactive/dead)"))
	ok, err := newClient(f, nil).Exists(context.Background(), "k3s-agent.service")
	assert.NilError(t, err)
	assert.Check(t, !ok)
}

func TestRestartMaskedUnit(t *testing.T) {
	f := &fakeBus{restart: func(string, chan<- string) error { t.Fatal("restart of a masked unit"); return nil }}
	f.set("kubelet.service", "inactive", "dead", time.Time{})
	f.props["kubelet.service"]["LoadState"] = "masked"
	_, err := newClient(f, nil).Restart(context.Background(), "kubelet.service")
	assert.Check(t, errors.Is(err, ErrUnitNotLoaded))
	assert.Check(t, is.ErrorContains(err, "masked"))
}

func TestRestartDBusError(t *testing.T) {
	f := &fakeBus{}
	f.set("containerd.service", "active", "running", time.Now())
	dbusErr := godbus.Error{Name: "org.freedesktop.systemd1.UnitMasked", Body: []any{"Unit containerd.service is masked."}}
	f.restart = func(string, chan<- string) error { return dbusErr }
	_, err := newClient(f, nil).Restart(context.Background(), "containerd.service")
	assert.Check(t, is.ErrorContains(err, "systemd: restart containerd.service: Unit containerd.service is masked."))
	var got godbus.Error
	assert.Check(t, errors.As(err, &got))
}

func TestInvalidName(t *testing.T) {
	f := &fakeBus{}
	for _, name := range []string{"", "containerd", "../x.service", "a b.service"} {
		_, err := newClient(f, nil).Status(context.Background(), name)
		assert.Check(t, is.ErrorContains(err, "invalid unit name"), name)
	}
}

func TestRestartIfNeeded(t *testing.T) {
	written := time.Now().Add(-time.Minute)
	for _, tc := range []struct {
		name        string
		active      string
		enter       time.Time
		wantRestart bool
	}{
		{"active since before the write", "active", written.Add(-time.Second), true},
		{"active since the very write", "active", written.Truncate(time.Microsecond), true},
		{"active since after the write", "active", written.Add(time.Second), false},
		{"failed after the write", "failed", written.Add(time.Second), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeBus{}
			f.set("containerd.service", tc.active, "x", tc.enter)
			f.restart = func(unit string, ch chan<- string) error {
				f.set(unit, "active", "running", time.Now())
				ch <- "done"
				return nil
			}
			st, d, err := newClient(f, nil).RestartIfNeeded(context.Background(), "containerd.service", written)
			assert.NilError(t, err)
			assert.Check(t, is.Equal(d.Restarted, tc.wantRestart), d.Reason)
			assert.Check(t, is.Equal(len(f.restarts), map[bool]int{true: 1}[tc.wantRestart]))
			assert.Check(t, st.Active())
			assert.Check(t, d.Reason != "")
		})
	}
	f := &fakeBus{}
	_, _, err := newClient(f, nil).RestartIfNeeded(context.Background(), "rke2-agent.service", written)
	assert.Check(t, errors.Is(err, ErrUnitNotFound))
	assert.Check(t, is.ErrorContains(err, "systemd: restart rke2-agent.service"))
}

func TestDialMissingSocket(t *testing.T) {
	root := t.TempDir()
	_, err := Dial(context.Background(), root)
	assert.Check(t, is.ErrorContains(err, filepath.Join(root, "run/systemd/private")))
}

// A peer that accepts the connection but never answers the authentication
// must not hang Dial past its context.
func TestDialSilentPeer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "private")
	l, err := net.Listen("unix", sock)
	assert.NilError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	for _, mk := range []func() (context.Context, context.CancelFunc){
		func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		},
		func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(200*time.Millisecond, cancel)
			return ctx, cancel
		},
	} {
		ctx, cancel := mk()
		start := time.Now()
		_, err = Dial(ctx, "/nonexistent", WithSocket(sock))
		cancel()
		assert.Check(t, err != nil)
		assert.Check(t, time.Since(start) < 3*time.Second, time.Since(start))
		assert.Check(t, strings.Contains(err.Error(), sock), err)
	}
}
