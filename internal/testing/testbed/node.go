package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Flavour names a node's container runtime.
type Flavour string

const (
	// Containerd16 is Debian 12's containerd 1.6.20 (config version 2) with its
	// distribution /etc/containerd/config.toml.
	Containerd16 Flavour = "containerd-1.6"
	// Containerd2 is containerd 2.2.9 built from source (config version 3), installed
	// over Debian's binaries under the same unit, without a config file.
	Containerd2 Flavour = "containerd-2.2"
	// CRIO is CRI-O 1.34.0 built from source with Debian's conmon, crun and runc, and a
	// base drop-in /etc/crio/crio.conf.d/10-crio.conf like CRI-O's own packages ship.
	CRIO Flavour = "crio-1.34"
)

// Flavours lists every node flavour.
func Flavours() []Flavour { return []Flavour{Containerd16, Containerd2, CRIO} }

// RuntimeUnit is the systemd unit that runs the flavour's runtime.
func (f Flavour) RuntimeUnit() string {
	if f == CRIO {
		return "crio.service"
	}
	return "containerd.service"
}

// CRISocketPath is the runtime's CRI socket as seen inside the node.
func (f Flavour) CRISocketPath() string {
	if f == CRIO {
		return "/run/crio/crio.sock"
	}
	return "/run/containerd/containerd.sock"
}

// Timeouts of a node's life cycle.
const (
	nodeBootTimeout = 60 * time.Second
	nodeStopTimeout = 30 * time.Second
)

// nodeOptions collects NodeOption settings.
type nodeOptions struct {
	name      string
	files     []nodeFile
	binds     []string
	timeout   time.Duration
	noCRIWait bool
	// Set by StartCluster for a node that runs a kubelet.
	layers     []string          // extra lower layers, above the flavour's
	init       []string          // PID 1 command instead of --boot
	nspawnArgs []string          // extra systemd-nspawn options
	afterStart func(*Node) error // once the node's systemd runs
}

type nodeFile struct {
	path    string
	data    []byte
	perm    os.FileMode
	symlink string
	remove  bool
}

// NodeOption adjusts a node before it boots.
type NodeOption func(*nodeOptions)

// WithName sets the node's name (its hostname and Node object name). The default is
// "tb-" plus the flavour and a random suffix.
func WithName(name string) NodeOption { return func(o *nodeOptions) { o.name = name } }

// WithFile puts a file at path (absolute, inside the node) before boot, creating parent
// directories; use it for a user's pre-existing runtime configuration.
func WithFile(path string, data []byte, perm os.FileMode) NodeOption {
	return func(o *nodeOptions) {
		o.files = append(o.files, nodeFile{path: path, data: append([]byte(nil), data...), perm: perm})
	}
}

// WithSymlink makes path a symbolic link to target before boot.
func WithSymlink(path, target string) NodeOption {
	return func(o *nodeOptions) { o.files = append(o.files, nodeFile{path: path, symlink: target}) }
}

// WithoutFile removes path (a file or directory of the flavour's root) before boot, e.g.
// the distribution's /etc/containerd/config.toml.
func WithoutFile(path string) NodeOption {
	return func(o *nodeOptions) { o.files = append(o.files, nodeFile{path: path, remove: true}) }
}

// WithBind bind-mounts hostPath at nodePath (systemd-nspawn --bind), read-write.
func WithBind(hostPath, nodePath string) NodeOption {
	return func(o *nodeOptions) { o.binds = append(o.binds, hostPath+":"+nodePath) }
}

// WithoutCRIWait makes StartNode return once the runtime unit is active, without waiting
// for the CRI socket to answer: for configurations that break the CRI plugin (containerd
// then runs on without it). RuntimeVersion is empty on such a node.
func WithoutCRIWait() NodeOption { return func(o *nodeOptions) { o.noCRIWait = true } }

// WithBootTimeout bounds the boot (default 60s).
func WithBootTimeout(d time.Duration) NodeOption { return func(o *nodeOptions) { o.timeout = d } }

// Node is a booted node: systemd-nspawn running real systemd on a copy-on-write copy
// (overlayfs) of the flavour's root, sharing the host's network.
type Node struct {
	name           string
	flavour        Flavour
	env            *env
	dir            string // upper, work, root
	root           string // the overlay mount nspawn boots
	logDir         string
	nspawn         *daemon
	cgroups        []string // the node's own cgroup in each hierarchy
	pid            int
	runtimeVersion string
}

// StartNode boots a node of flavour f and waits until its runtime unit is active and its
// CRI socket answers. t.Cleanup saves the node's journal to its log directory, shuts
// it down, waits, unmounts and removes its files.
func StartNode(t testing.TB, f Flavour, opts ...NodeOption) *Node {
	t.Helper()
	e := requireEnv(t)
	layer, ok := e.layers[f]
	if !ok {
		t.Fatalf("testbed: unknown flavour %q (have %v)", f, Flavours())
	}
	o := nodeOptions{name: "tb-" + strings.ReplaceAll(strings.ReplaceAll(string(f), ".", ""), "containerd", "ctrd") + "-" + randHex(3),
		timeout: nodeBootTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	base := nodesDir()
	sweepStaleNodes(t, base)
	logDir := newLogDir(t, o.name)
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	dir, err := os.MkdirTemp(base, o.name+"-")
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	n := &Node{name: o.name, flavour: f, env: e, dir: dir, root: filepath.Join(dir, "root"), logDir: logDir}
	t.Cleanup(func() {
		start := time.Now()
		if err := n.stop(); err != nil {
			t.Errorf("testbed: stop node %s: %v", n.name, err)
			return
		}
		t.Logf("testbed: node %s stopped and removed in %s", n.name, time.Since(start).Round(10*time.Millisecond))
	})
	start := time.Now()
	if err := n.boot(layer, o); err != nil {
		t.Fatalf("testbed: node %s (%s): %v; logs in %s", n.name, f, err, logDir)
	}
	t.Logf("testbed: node %s (%s, %s) booted in %s", n.name, f, n.runtimeVersion, time.Since(start).Round(10*time.Millisecond))
	return n
}

// nodesDir holds one directory per running node; kept out of t.TempDir so that a
// directory is only removed after its overlay is unmounted.
func nodesDir() string { return filepath.Join(os.TempDir(), "kata-deploy-testbed-nodes") }

func (n *Node) boot(layer string, o nodeOptions) error {
	upper, work := filepath.Join(n.dir, "upper"), filepath.Join(n.dir, "work")
	for _, d := range []string{upper, work, n.root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("node dirs: %w", err)
		}
	}
	// The owner file lets a later run clean up after a test binary that was killed.
	owner := fmt.Sprintf("%d\n", os.Getpid())
	if err := os.WriteFile(filepath.Join(n.dir, "owner"), []byte(owner), 0o644); err != nil {
		return fmt.Errorf("node owner file: %w", err)
	}
	for _, f := range o.files {
		if err := placeFile(upper, f); err != nil {
			return err
		}
	}
	lower := strings.Join(append(append(slices.Clone(o.layers), layer), n.env.rootfs), ":")
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := syscall.Mount("overlay", n.root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay root (%s): %w", opts, err)
	}
	args := []string{
		"--quiet", "--directory", n.root, "--machine", n.name,
		"--register=no", "--keep-unit", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
		// Image stores on tmpfs: overlayfs snapshots cannot stack on the overlay root.
		"--tmpfs=/var/lib/containerd", "--tmpfs=/var/lib/containers",
	}
	for _, b := range o.binds {
		args = append(args, "--bind="+b)
	}
	args = append(args, o.nspawnArgs...)
	if len(o.init) > 0 {
		args = append(append(args, "--"), o.init...)
	} else {
		args = append(args, "--boot")
	}
	var err error
	if n.cgroups, err = makeNodeCgroups(filepath.Base(n.dir)); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.dir, "cgroups"), []byte(strings.Join(n.cgroups, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("node cgroups file: %w", err)
	}
	// nspawn starts in the node's own cgroups (cgroup v1 has no way to start a
	// process in another cgroup but to move it first): the shell joins each, then
	// becomes nspawn.
	join := []string{"-c", `while [ "$1" != -- ]; do echo $$ > "$1" || exit 1; shift; done; shift; exec "$@"`, "sh"}
	for _, d := range n.cgroups {
		join = append(join, filepath.Join(d, "cgroup.procs"))
	}
	cmd := exec.Command("/bin/sh", append(append(join, "--", "systemd-nspawn"), args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_LOG_LEVEL=warning"}
	// SIGTERM makes nspawn power the node off cleanly if the test binary dies.
	d, err := startDaemon("systemd-nspawn "+n.name, cmd, filepath.Join(n.logDir, "console.log"), syscall.SIGTERM)
	if err != nil {
		return err
	}
	n.nspawn = d
	if err := os.WriteFile(filepath.Join(n.dir, "nspawn.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return fmt.Errorf("node pid file: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if n.pid, err = n.findInit(ctx); err != nil {
		return err
	}
	if o.afterStart != nil {
		if err := o.afterStart(n); err != nil {
			return err
		}
	}
	return n.waitReady(ctx, !o.noCRIWait)
}

// placeFile writes one NodeOption file into the overlay's upper layer.
func placeFile(upper string, f nodeFile) error {
	if !filepath.IsAbs(f.path) {
		return fmt.Errorf("node file %q: path must be absolute", f.path)
	}
	p := filepath.Join(upper, filepath.Clean(f.path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("node file %s: %w", f.path, err)
	}
	switch {
	case f.remove:
		// An overlayfs whiteout: a 0/0 character device hides the lower file.
		if err := syscall.Mknod(p, syscall.S_IFCHR, 0); err != nil {
			return fmt.Errorf("node file %s: whiteout: %w", f.path, err)
		}
	case f.symlink != "":
		if err := os.Symlink(f.symlink, p); err != nil {
			return fmt.Errorf("node file %s: %w", f.path, err)
		}
	default:
		if err := os.WriteFile(p, f.data, f.perm); err != nil {
			return fmt.Errorf("node file %s: %w", f.path, err)
		}
		// WriteFile's perm is masked by the umask; the caller asked for exactly perm.
		if err := os.Chmod(p, f.perm); err != nil {
			return fmt.Errorf("node file %s: %w", f.path, err)
		}
	}
	return nil
}

// findInit finds the node's PID 1 (systemd): the child of nspawn in another PID namespace.
func (n *Node) findInit(ctx context.Context) (int, error) {
	self, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return 0, fmt.Errorf("own pid namespace: %w", err)
	}
	parent := n.nspawn.cmd.Process.Pid
	for {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return 0, fmt.Errorf("read /proc: %w", err)
		}
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || ppid(pid) != parent {
				continue
			}
			ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if err == nil && ns != self && strings.TrimSpace(string(comm)) == "systemd" {
				return pid, nil
			}
		}
		select {
		case <-n.nspawn.done:
			return 0, fmt.Errorf("systemd-nspawn exited (%v) before the node's systemd started", n.nspawn.err)
		case <-ctx.Done():
			return 0, fmt.Errorf("node's systemd did not start: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ppid reads the parent PID from /proc/PID/stat (0 if the process is gone).
func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may contain spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// waitReady waits for systemd to finish booting, the runtime unit to be active and its
// CRI socket to answer; it records the runtime version the kubelet would report.
func (n *Node) waitReady(ctx context.Context, cri bool) error {
	for {
		v, last := n.readiness(ctx, cri)
		if last == nil {
			n.runtimeVersion = v
			return nil
		}
		select {
		case <-n.nspawn.done:
			return fmt.Errorf("systemd-nspawn exited (%v) during boot; last: %w", n.nspawn.err, last)
		case <-ctx.Done():
			return fmt.Errorf("node not ready: %w (last: %w)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (n *Node) readiness(ctx context.Context, cri bool) (string, error) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := n.Systemd(pctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	state, err := conn.GetManagerProperty("SystemState")
	if err != nil {
		return "", fmt.Errorf("system state: %w", err)
	}
	// "running", or "degraded" when some unrelated unit failed: booting is over either way.
	if state != `"running"` && state != `"degraded"` {
		return "", fmt.Errorf("system state %s", state)
	}
	p, err := conn.GetUnitPropertyContext(pctx, n.RuntimeUnit(), "ActiveState")
	if err != nil {
		return "", fmt.Errorf("%s state: %w", n.RuntimeUnit(), err)
	}
	if s := p.Value.Value(); s != "active" {
		return "", fmt.Errorf("%s is %v", n.RuntimeUnit(), s)
	}
	if !cri {
		return "", nil
	}
	return n.criVersion(pctx)
}

// Name is the node's hostname and Node object name.
func (n *Node) Name() string { return n.name }

// Flavour is the node's runtime flavour.
func (n *Node) Flavour() Flavour { return n.flavour }

// PID is the host PID of the node's systemd (its PID 1).
func (n *Node) PID() int { return n.pid }

// HostRoot is the node's root file system seen from the host (/proc/PID/root). Absolute
// symbolic links inside it resolve against the host's root, not the node's: resolve
// them inside the root (securejoin) when following them.
func (n *Node) HostRoot() string { return fmt.Sprintf("/proc/%d/root", n.pid) }

// HostPath is the host path of path inside the node.
func (n *Node) HostPath(path string) string { return filepath.Join(n.HostRoot(), path) }

// RuntimeUnit is the systemd unit of the node's runtime: containerd.service or crio.service.
func (n *Node) RuntimeUnit() string { return n.flavour.RuntimeUnit() }

// SystemdSocket is the host path of the node's /run/systemd/private, the socket a
// DaemonSet pod mounts to talk to systemd without the bus daemon. systemd only accepts
// it from the node's PID namespace or a child of it (see RunAsPod).
func (n *Node) SystemdSocket() string { return n.HostPath("/run/systemd/private") }

// BusSocket is the host path of the node's D-Bus system bus socket; Systemd uses it.
func (n *Node) BusSocket() string { return n.HostPath("/run/dbus/system_bus_socket") }

// CRISocket is the host path of the runtime's CRI socket.
func (n *Node) CRISocket() string { return n.HostPath(n.flavour.CRISocketPath()) }

// RuntimeVersion is what the kubelet reports as status.nodeInfo.containerRuntimeVersion
// (CRI Version: RuntimeName://RuntimeVersion), read at boot.
func (n *Node) RuntimeVersion() string { return n.runtimeVersion }

// LogDir is the node's log directory (console.log; journal.log written at teardown).
func (n *Node) LogDir() string { return n.logDir }

// podPath is the environment commands run with inside the node.
const podPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Exec runs args inside the node (nsenter -t PID -a: all its namespaces, its root) and
// returns the standard output. The error carries the standard error.
func (n *Node) Exec(ctx context.Context, args ...string) ([]byte, error) {
	return n.exec(ctx, nil, args...)
}

func (n *Node) exec(ctx context.Context, env []string, args ...string) ([]byte, error) {
	if len(args) == 0 {
		return nil, errors.New("exec: no command")
	}
	full := append([]string{"-t", strconv.Itoa(n.pid), "-a", "--"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.Env = append([]string{podPath}, env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("node %s: %s: %w: %s", n.name, strings.Join(args, " "), err, tail(stderr.Bytes(), 2048))
	}
	return stdout.Bytes(), nil
}

func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// RunAsPod copies hostBinary into the node's file system and runs it where a pod's
// process sits on a host: inside the node's namespaces but in a child PID namespace of
// its own (nsenter -t PID -a -- unshare -p -f --mount-proc). From there systemd accepts
// connections on /run/systemd/private, as it does from a real DaemonSet pod. It is not a
// pod: no kubelet, no hostPath mounts, the whole node root writable.
func (n *Node) RunAsPod(ctx context.Context, hostBinary string, args ...string) ([]byte, error) {
	return n.RunAsPodEnv(ctx, nil, hostBinary, args...)
}

// RunAsPodEnv is RunAsPod with extra environment variables (KEY=VALUE), e.g. NODE_NAME.
func (n *Node) RunAsPodEnv(ctx context.Context, env []string, hostBinary string, args ...string) ([]byte, error) {
	inNode := "/var/lib/testbed/bin/" + filepath.Base(hostBinary) + "-" + randHex(3)
	if err := copyFile(hostBinary, n.HostPath(inNode), 0o755); err != nil {
		return nil, fmt.Errorf("copy %s into node %s: %w", hostBinary, n.name, err)
	}
	defer os.Remove(n.HostPath(inNode))
	return n.exec(ctx, env, append([]string{"unshare", "-p", "-f", "--mount-proc", inNode}, args...)...)
}

func copyFile(src, dst string, perm os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, perm)
}

// stop saves the journal, shuts the node down and removes its files; safe to call on a
// node that failed half-way through boot.
func (n *Node) stop() error {
	var errs []error
	if n.nspawn != nil && !n.nspawn.exited() && n.pid != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		out, err := n.Exec(ctx, "journalctl", "--no-pager", "-b", "-o", "short-precise")
		cancel()
		if err == nil {
			err = os.WriteFile(filepath.Join(n.logDir, "journal.log"), out, 0o644)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("save journal: %w", err))
		}
	}
	if n.nspawn != nil {
		// nspawn turns SIGTERM into SIGRTMIN+3 for the node's systemd: an orderly shutdown (halt).
		if err := n.nspawn.stop(syscall.SIGTERM, nodeStopTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeCgroups(n.cgroups); err != nil {
		errs = append(errs, err)
	}
	if err := removeNodeDir(n.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeNodeDir unmounts a node's root and removes its directory. It never removes a
// directory whose root is still mounted.
func removeNodeDir(dir string) error {
	root := filepath.Join(dir, "root")
	for i := 0; isMountpoint(root); i++ {
		flags := 0
		if i >= 20 {
			// Still busy after 2s: detach it; it goes away when the last user does.
			flags = syscall.MNT_DETACH
		}
		if err := syscall.Unmount(root, flags); err != nil && i >= 20 {
			return fmt.Errorf("unmount %s: %w", root, err)
		}
		if i > 20 {
			return fmt.Errorf("unmount %s: still mounted", root)
		}
		if isMountpoint(root) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove node dir: %w", err)
	}
	return nil
}

// isMountpoint reports whether path is a mount point (its device differs from its
// parent's); false if it does not exist.
func isMountpoint(path string) bool {
	var st, parent syscall.Stat_t
	if syscall.Lstat(path, &st) != nil || syscall.Lstat(filepath.Dir(path), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// sweepStaleNodes removes the nodes of test binaries that died without cleaning up.
func sweepStaleNodes(t testing.TB, base string) {
	t.Helper()
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		dir := filepath.Join(base, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue
		}
		owner, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if owner <= 0 || syscall.Kill(owner, 0) == nil {
			continue // still owned by a live test binary
		}
		if b, err := os.ReadFile(filepath.Join(dir, "nspawn.pid")); err == nil {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if pid > 0 && strings.TrimSpace(string(comm)) == "systemd-nspawn" {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				time.Sleep(500 * time.Millisecond)
			}
		}
		if b, err := os.ReadFile(filepath.Join(dir, "cgroups")); err == nil {
			if err := removeCgroups(strings.Fields(string(b))); err != nil {
				t.Logf("testbed: stale node %s: %v", dir, err)
			}
		}
		if err := removeNodeDir(dir); err != nil {
			t.Logf("testbed: stale node %s: %v", dir, err)
		} else {
			t.Logf("testbed: removed stale node %s", dir)
		}
	}
}
