package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

const (
	runtimeLabel = "kata-containers.io/container-runtime"
	kataLabel    = "kata-containers.io/kata-runtime"
)

// userConfig is a node's own runtime config, with settings that must
// survive install and uninstall.
type userConfig struct {
	path     string
	content  string
	settings []string // strings the runtime's live config must still show
}

func userConfigFor(f testbed.Flavour) userConfig {
	switch f {
	case testbed.Containerd16:
		return userConfig{path: "/etc/containerd/config.toml", content: `# Node image config; keep my comments.
version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.example.com/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["https://mirror.example.com"]
`, settings: []string{"registry.example.com/pause:3.9", "https://mirror.example.com"}}
	case testbed.Containerd2:
		return userConfig{path: "/etc/containerd/config.toml", content: `version = 3
# Node image config; keep my comments.

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "registry.example.com/pause:3.10"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    BinaryName = "/usr/bin/runc"
`, settings: []string{"registry.example.com/pause:3.10", "/usr/bin/runc"}}
	}
	return userConfig{path: "/etc/crio/crio.conf.d/10-node.conf", content: `# Node image drop-in; keep it.
[crio.image]
pause_image = "registry.example.com/pause:3.10"
`, settings: []string{"registry.example.com/pause:3.10"}}
}

// TestQuickStart runs the original quick start on each flavour: label the
// node with its runtime, install (one restart, handlers live, user settings
// kept, node labelled, events), re-run without change, then uninstall and
// clean up in the original order.
func TestQuickStart(t *testing.T) {
	testbed.Require(t)
	for _, f := range testbed.Flavours() {
		t.Run(string(f), func(t *testing.T) {
			quickStart(t, f)
		})
	}
}

func quickStart(t *testing.T, f testbed.Flavour) {
	ctx := context.Background()
	c := newCluster(t)
	uc := userConfigFor(f)
	n := c.startNode(t, f, testbed.WithFile(uc.path, []byte(uc.content), 0o644))
	unit := n.RuntimeUnit()
	t.Logf("node %s is up: %s, API server %s", n.Name(), n.RuntimeVersion(), c.cp.Host())
	before := hostFiles(t, n, false)

	// 1. The labeler labels the node with its runtime.
	labeler := n.start(t, "kata-labeler", n.env("kata-labeler"))
	want := "containerd"
	if f == testbed.CRIO {
		want = "crio"
	}
	took := c.waitLabel(t, n.Name(), runtimeLabel, want, time.Minute)
	t.Logf("kata-labeler: node labelled %s=%s in %s", runtimeLabel, want, took.Round(time.Millisecond))

	// 2. A dry run shows what the install will do, and changes nothing.
	plan, err := n.run(t, "kata-installer", n.env("kata-installer"), "plan")
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, plan)
	}
	for _, s := range []string{"+ /opt/kata/bin/containerd-shim-kata-v2", "kata-qemu", "# restarts: " + unit} {
		if !strings.Contains(plan, s) {
			t.Errorf("kata-installer plan does not mention %q:\n%s", s, plan)
		}
	}
	assertSameFiles(t, before, hostFiles(t, n, false), "kata-installer plan")
	t.Logf("kata-installer plan (dry run, nothing changed):\n%s", indent(configDiff(plan)))

	// 3. The installer installs, restarts the runtime once, verifies, labels.
	since := time.Now()
	installer := n.start(t, "kata-installer", n.env("kata-installer", "KATA_DAEMONSET="))
	took = c.waitLabel(t, n.Name(), kataLabel, "true", 3*time.Minute)
	t.Logf("kata-installer: node labelled %s=true %s after start", kataLabel, took.Round(time.Millisecond))
	if got := starts(t, n, unit, since); got != 1 {
		t.Errorf("%s started %d times during install, want exactly 1", unit, got)
	}
	handlers, err := n.RuntimeHandlers(ctx)
	must(t, err)
	for _, h := range []string{"kata", "kata-qemu", "kata-dragonball"} {
		if !slices.Contains(handlers, h) {
			t.Errorf("the runtime does not serve %s; it serves %v", h, handlers)
		}
	}
	live := liveConfig(t, n)
	for _, s := range append(uc.settings, "/opt/kata/bin/containerd-shim-kata-v2", "/opt/kata/runtime-rs/bin/containerd-shim-kata-v2",
		"/opt/kata/share/defaults/kata-containers/runtimes/qemu/configuration-qemu.toml",
		"/opt/kata/share/defaults/kata-containers/runtime-rs/runtimes/dragonball/configuration-dragonball.toml") {
		if !strings.Contains(live, s) {
			t.Errorf("the runtime's live config lacks %q", s)
		}
	}
	t.Logf("the runtime serves %v; its live config keeps the node's own settings %v", handlers, uc.settings)
	var reasons []string
	for _, e := range c.events(t, n.Name()) {
		reasons = append(reasons, e.Reason)
	}
	if !slices.Contains(reasons, "KataInstallSucceeded") {
		t.Errorf("no success event on the Node; events: %v", reasons)
	}

	status, err := n.run(t, "kata-installer", n.env("kata-installer"), "status")
	if err != nil || !strings.Contains(status, "/opt/kata (installed)") {
		t.Errorf("kata-installer status: %v\n%s", err, status)
	}
	t.Logf("kata-installer status:\n%s", indent(status))

	// 4. Running the installer again changes nothing and restarts nothing.
	installed := hostFiles(t, n, true)
	since = time.Now()
	out, err := n.run(t, "kata-installer", n.env("kata-installer", "KATA_ONCE=true"))
	if err != nil {
		t.Fatalf("second install: %v\n%s", err, out)
	}
	if got := starts(t, n, unit, since); got != 0 {
		t.Errorf("the no-op re-run started %s %d times", unit, got)
	}
	assertSameFiles(t, installed, hostFiles(t, n, true), "the no-op re-run")
	t.Logf("second kata-installer run: no file changed, no restart")

	// 5. Deleting the installer DaemonSet: SIGTERM uninstalls and marks the
	// node for cleanup; the cleanup DaemonSet then removes the labels and
	// restarts the runtime.
	since = time.Now()
	installer.signal(syscall.SIGTERM)
	if err := installer.wait(t, 3*time.Minute); err != nil {
		t.Fatalf("installer exited with %v:\n%s", err, installer.out.String())
	}
	c.waitLabel(t, n.Name(), kataLabel, "cleanup", 10*time.Second)
	assertSameFiles(t, before, afterUninstall(t, hostFiles(t, n, false)), "uninstall")
	if _, err := os.Stat(n.HostPath("/opt/kata")); !os.IsNotExist(err) {
		t.Errorf("/opt/kata is still there after uninstall (err %v)", err)
	}
	t.Logf("kata-installer on SIGTERM: config byte-identical to before, payload gone, node marked cleanup")
	labeler.signal(syscall.SIGTERM)
	must(t, labeler.wait(t, 30*time.Second))

	out, err = n.run(t, "kata-cleanup", n.env("kata-cleanup", "KATA_ONCE=true"))
	if err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	c.waitLabel(t, n.Name(), kataLabel, "", 10*time.Second)
	c.waitLabel(t, n.Name(), runtimeLabel, "", 10*time.Second)
	if got := starts(t, n, unit, since); got < 2 {
		t.Errorf("%s started %d times during uninstall and cleanup, want 2 (uninstall, cleanup)", unit, got)
	}
	t.Logf("kata-cleanup: both labels removed, %s restarted", unit)
}

// configDiff keeps the runtime-config part of a plan: the payload's file
// list is long and says little.
func configDiff(plan string) string {
	var out []string
	for _, l := range strings.Split(plan, "\n") {
		if !strings.HasPrefix(l, "+ /opt/") && !strings.HasPrefix(l, "~ /opt/") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// hostTree is a node's file system seen from the host.
type hostTree interface {
	HostPath(string) string
	HostRoot() string
}

// hostFiles reads the runtime's config files and kata-deploy's state;
// withMtimes adds each file's modification time, to tell a file rewritten
// with the same bytes. The install record's own time stamp is left out:
// it says when the record was last written, and a re-run after a kill
// writes it again. Symlinks are their targets; /usr/local/bin, where the
// shim links for containerd 1.6 go beside the node's own binaries, is
// read as names, types, sizes and modes only.
func hostFiles(t *testing.T, n hostTree, withMtimes bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, dir := range []string{"/etc/containerd", "/etc/crio", "/var/lib/kata-deploy", "/opt/kata", "/usr/local/bin"} {
		root := n.HostPath(dir)
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return nil
			}
			rel := strings.TrimPrefix(p, n.HostRoot())
			var v string
			switch {
			case fi.IsDir():
				out[rel+"/"] = ""
				return nil
			case fi.Mode()&os.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				v = "-> " + target
			case dir == "/usr/local/bin":
				v = fmt.Sprintf("%s %d bytes", fi.Mode(), fi.Size())
			default:
				data, _ := os.ReadFile(p)
				if strings.HasPrefix(rel, "/var/lib/kata-deploy/install") {
					data = updatedStamp.ReplaceAll(data, nil)
				}
				v = string(data)
			}
			if withMtimes {
				v += "\x00mtime=" + fi.ModTime().String()
			}
			out[rel] = v
			return nil
		})
	}
	return out
}

// afterUninstall takes out of files what an uninstall with an API server
// leaves for the cleanup DaemonSet: the install record, in state
// "uninstalled" (it names the runtime the cleanup restarts), and the state
// directory when that record was all it held.
func afterUninstall(t *testing.T, files map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var left []string
	for p, v := range files {
		if strings.HasPrefix(p, "/var/lib/kata-deploy/install") && strings.HasSuffix(p, ".json") {
			if !strings.Contains(v, `"state": "uninstalled"`) {
				t.Errorf("after the uninstall %s is not in state uninstalled:\n%s", p, v)
			}
			continue
		}
		if strings.HasPrefix(p, "/var/lib/kata-deploy/") && p != "/var/lib/kata-deploy/" {
			left = append(left, p)
		}
		out[p] = v
	}
	if len(left) == 0 {
		delete(out, "/var/lib/kata-deploy/")
	}
	return out
}

func assertSameFiles(t *testing.T, want, got map[string]string, what string) {
	t.Helper()
	for p, w := range want {
		if g, ok := got[p]; !ok {
			t.Errorf("%s removed %s", what, p)
		} else if g != w {
			if len(g) < 2000 && len(w) < 2000 {
				t.Errorf("%s changed %s:\n--- want\n%s\n--- got\n%s", what, p, w, g)
			} else {
				t.Errorf("%s changed %s", what, p)
			}
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s left %s behind", what, p)
		}
	}
}

// starts counts how often systemd started unit after since, from the
// node's journal ("unit started" messages, with microsecond timestamps).
func starts(t *testing.T, n interface {
	Exec(context.Context, ...string) ([]byte, error)
}, unit string, since time.Time) int {
	t.Helper()
	out, err := n.Exec(context.Background(), "journalctl", "--no-pager", "-o", "short-unix", "-u", unit,
		"MESSAGE_ID=39f53479d3a045ac8e11786248231fbf")
	must(t, err)
	count := 0
	for _, l := range strings.Split(string(out), "\n") {
		stamp, _, _ := strings.Cut(l, " ")
		sec, err := strconv.ParseFloat(stamp, 64)
		if err != nil {
			continue
		}
		if time.UnixMicro(int64(sec * 1e6)).After(since) {
			count++
		}
	}
	return count
}

// liveConfig is the runtime's own view of its config: containerd's CRI
// config from a verbose CRI status together with what it loads from its
// files (config dump; 2.x keeps image settings out of the CRI status), or
// CRI-O's running config.
func liveConfig(t *testing.T, n *node) string {
	t.Helper()
	if n.Flavour() == testbed.CRIO {
		out, err := n.Exec(context.Background(), "crio", "status", "config")
		must(t, err)
		return string(out)
	}
	info, err := n.CRIStatus(context.Background())
	must(t, err)
	data, err := json.Marshal(info)
	must(t, err)
	dump, err := n.Exec(context.Background(), "containerd", "config", "dump")
	must(t, err)
	return strings.ReplaceAll(string(data), `\"`, `"`) + "\n" + string(dump)
}
