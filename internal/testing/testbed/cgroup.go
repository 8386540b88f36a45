package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// cgroupParent is the directory, in each cgroup hierarchy under the test process's own
// cgroup, that holds one cgroup per node.
const cgroupParent = "kata-testbed"

// makeNodeCgroups makes a cgroup of the node's own in every cgroup hierarchy the test
// process is in (cgroup v1 controllers, systemd's named hierarchy, the unified one),
// under the test process's cgroup, and returns their directories. A node whose
// systemd ran in the test process's cgroup would create system.slice and kubepods.slice
// beside the test's own processes, shared with every other node there (one node's
// systemd stopping "containerd.service" would kill the other's), and in the host's root
// cgroups where the test runs at the root.
func makeNodeCgroups(name string) ([]string, error) {
	mine, err := ownCgroupDirs()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, base := range mine {
		dir := filepath.Join(base, cgroupParent, name)
		for _, d := range []string{filepath.Join(base, cgroupParent), dir} {
			if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				removeCgroups(dirs)
				return nil, fmt.Errorf("node cgroup: %w", err)
			}
			// A cpuset cgroup takes no process before it has CPUs and memory nodes.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if v, err := os.ReadFile(filepath.Join(filepath.Dir(d), f)); err == nil {
					if cur, _ := os.ReadFile(filepath.Join(d, f)); strings.TrimSpace(string(cur)) == "" {
						if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
							removeCgroups(append(dirs, dir))
							return nil, fmt.Errorf("node cgroup %s: %w", f, err)
						}
					}
				}
			}
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

// ownCgroupDirs returns the directory of the test process's cgroup in each mounted
// hierarchy.
func ownCgroupDirs() ([]string, error) {
	type mount struct{ point, root, opts, fstype string }
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer mi.Close()
	var mounts []mount
	sc := bufio.NewScanner(mi)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 || (g[0] != "cgroup" && g[0] != "cgroup2") {
			continue
		}
		mounts = append(mounts, mount{point: f[4], root: f[3], opts: g[2], fstype: g[0]})
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrls, p := parts[1], parts[2]
		for _, m := range mounts {
			matches := ctrls == "" && m.fstype == "cgroup2"
			if ctrls != "" && m.fstype == "cgroup" {
				opts := strings.Split(m.opts, ",")
				matches = true
				for _, c := range strings.Split(ctrls, ",") {
					matches = matches && slices.Contains(opts, c)
				}
			}
			if !matches {
				continue
			}
			rel, err := filepath.Rel(m.root, p)
			if err != nil || strings.HasPrefix(rel, "..") {
				continue // a mount of another part of the hierarchy
			}
			out = append(out, filepath.Join(m.point, rel))
			break
		}
	}
	if len(out) == 0 {
		return nil, errors.New("node cgroup: no cgroup hierarchy of this process is mounted")
	}
	return out, nil
}

// removeCgroups removes the node cgroups dirs and every cgroup below them, deepest
// first, waiting a little for processes that are still exiting; then the shared parent
// when no other node uses it.
func removeCgroups(dirs []string) error {
	var errs []error
	for _, dir := range dirs {
		var all []string
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		slices.Reverse(all)
		for _, d := range all {
			var err error
			for i := 0; i < 50; i++ {
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) || !errors.Is(err, syscall.EBUSY) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
		_ = syscall.Rmdir(filepath.Dir(dir)) // the parent, once empty
	}
	return errors.Join(errs...)
}
