package testbed

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// The faults a real node meets and an idle test machine never shows: a
// runtime that takes long to start, a busy CPU, an API server that stops
// answering. Tests prove every flow under them (docs/e2e.md).

// WithSlowRuntimeStart makes each node's runtime take d longer to start,
// every time it starts (a systemd drop-in with ExecStartPre=/bin/sleep),
// as a runtime does on a big node with hundreds of containers to restore.
func WithSlowRuntimeStart(d time.Duration) ClusterOption {
	return WithEachNode(func(f Flavour) []NodeOption {
		dropin := fmt.Sprintf("[Service]\nExecStartPre=/bin/sleep %g\n", d.Seconds())
		return []NodeOption{WithFile("/etc/systemd/system/"+f.RuntimeUnit()+".d/50-testbed-slow-start.conf", []byte(dropin), 0o644)}
	})
}

// ClusterOption configures StartClusterWith.
type ClusterOption func(*clusterOptions)

// WithEachNode gives each node of the cluster the options opts returns
// for its flavour.
func WithEachNode(opts func(Flavour) []NodeOption) ClusterOption {
	return func(o *clusterOptions) { o.perNode = append(o.perNode, opts) }
}

type clusterOptions struct {
	perNode []func(Flavour) []NodeOption
}

// BusyCPU keeps every CPU of the machine busy until t ends: one busy loop
// per CPU, at the scheduler's normal priority, competing with the cluster
// for every cycle.
func BusyCPU(t testing.TB) {
	t.Helper()
	for range runtime.NumCPU() {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("testbed: busy loop: %v", err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	t.Logf("testbed: %d busy loops keep every CPU busy", runtime.NumCPU())
}

// StopAPIServer makes the API server unreachable for d: it is stopped
// (SIGSTOP), so that connections hang as they do when a control plane
// node is lost, not refused, and then continued. It returns once the API
// server runs again, or when ctx ends (the API server then runs again too).
func (c *ControlPlane) StopAPIServer(ctx context.Context, d time.Duration) error {
	if c.api == nil || c.api.exited() {
		return fmt.Errorf("testbed: no API server running")
	}
	pid := c.api.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("testbed: stop the API server: %w", err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
	}
	return nil
}
