package testbed

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// daemon is a child process the testbed started and must stop.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed
}

// startDaemon starts cmd with its output in logPath. The child gets SIGKILL if the test
// binary dies first (Pdeathsig), so a crashed test leaves no daemon behind.
func startDaemon(name string, cmd *exec.Cmd, logPath string, deathSig syscall.Signal) (*daemon, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: deathSig, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		logf.Close()
		close(d.done)
	}()
	return d, nil
}

// exited reports whether the process has ended.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// errKilled marks a daemon that outlived its grace after a signal and was
// killed: gone all the same, which a control plane's teardown logs rather
// than fails on (kube-apiserver 1.37's graceful shutdown can wait on its
// storage object counts past any grace under load).
var errKilled = errors.New("killed")

// stopControlPlane stops the control plane at the end of t: a daemon that
// had to be killed is logged, any other failure is t's error.
func stopControlPlane(t testing.TB, stop func() error) {
	err := stop()
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		if e != nil && !errors.Is(e, errKilled) {
			t.Errorf("testbed: stop control plane: %v", err)
			return
		}
	}
	t.Logf("testbed: stop control plane: %v", err)
}

// stop sends sig, waits up to grace, then kills the whole process group.
func (d *daemon) stop(sig syscall.Signal, grace time.Duration) error {
	if d.exited() {
		return nil
	}
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-d.done:
		return fmt.Errorf("%s did not stop within %s after %s: %w", d.name, grace, sig, errKilled)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", d.name, d.cmd.Process.Pid)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. Callers retry if
// a daemon then fails to bind it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("find a free port: not a TCP address")
	}
	return addr.Port, nil
}
