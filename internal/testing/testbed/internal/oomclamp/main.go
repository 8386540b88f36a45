// Command oomclamp stands between CRI-O and runc on a testbed cluster node. The kubelet
// gives node-critical and Guaranteed pods a negative oom_score_adj, which needs
// CAP_SYS_RESOURCE, and no process in a systemd-nspawn node has it; containerd has
// restrict_oom_score_adj for this, CRI-O has nothing. Before runc creates a container,
// oomclamp raises a negative process.oomScoreAdj in the bundle's config.json to 0, then
// runs runc with the same arguments.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

const runc = "/usr/sbin/runc"

func main() {
	if bundle := bundleOf(os.Args[1:]); bundle != "" {
		if err := clamp(filepath.Join(bundle, "config.json")); err != nil {
			fmt.Fprintf(os.Stderr, "oomclamp: %v\n", err)
			os.Exit(1)
		}
	}
	err := syscall.Exec(runc, append([]string{runc}, os.Args[1:]...), os.Environ())
	fmt.Fprintf(os.Stderr, "oomclamp: exec %s: %v\n", runc, err)
	os.Exit(1)
}

// bundleOf returns the bundle directory of a create or run command, else "".
func bundleOf(args []string) string {
	cmd := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case cmd == "" && (a == "create" || a == "run"):
			cmd = a
		case cmd != "" && (a == "--bundle" || a == "-b") && i+1 < len(args):
			return args[i+1]
		case cmd != "" && len(a) > 9 && a[:9] == "--bundle=":
			return a[9:]
		}
	}
	if cmd != "" {
		return "." // runc's default: the working directory
	}
	return ""
}

func clamp(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	proc, _ := spec["process"].(map[string]any)
	adj, ok := proc["oomScoreAdj"].(float64)
	if !ok || adj >= 0 {
		return nil
	}
	proc["oomScoreAdj"] = 0
	out, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	tmp := path + ".oomclamp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
