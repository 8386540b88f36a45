package testbed

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ContainerdConfigDump runs the real containerd of flavour (Containerd16 or Containerd2)
// as `containerd --config configPath config dump`, chrooted into hostRoot so that the
// config's absolute imports resolve inside hostRoot, and returns the effective config.
//
// hostRoot is a plain directory (e.g. t.TempDir() holding etc/containerd/...); configPath
// is absolute inside it. hostRoot is not modified: the binary comes in through a
// read-only overlay of hostRoot under a layer holding it. Needs root and a provisioned
// testbed. For a running node run `containerd config dump` with Node.Exec instead.
func ContainerdConfigDump(ctx context.Context, flavour Flavour, hostRoot, configPath string) ([]byte, error) {
	e, err := check()
	if err != nil {
		return nil, err
	}
	layer, ok := e.execLayers[flavour]
	if !ok {
		return nil, fmt.Errorf("containerd config dump: no containerd for flavour %q", flavour)
	}
	if !filepath.IsAbs(configPath) {
		return nil, fmt.Errorf("containerd config dump: config path %q is not absolute", configPath)
	}
	hostRoot, err = filepath.Abs(hostRoot)
	if err != nil {
		return nil, fmt.Errorf("containerd config dump: %w", err)
	}
	// Overlay options are separated by ',' and lower layers by ':'.
	for _, p := range []string{hostRoot, layer} {
		if strings.ContainsAny(p, ",:") {
			return nil, fmt.Errorf("containerd config dump: path %q has ',' or ':'", p)
		}
	}
	mnt, err := os.MkdirTemp("", "testbed-configdump-")
	if err != nil {
		return nil, fmt.Errorf("containerd config dump: %w", err)
	}
	defer os.Remove(mnt)
	argv := []string{"/.testbed/bin/containerd"}
	if _, err := os.Stat(filepath.Join(layer, ".testbed/lib/ld-linux-x86-64.so.2")); err == nil {
		// Debian's binary is dynamic: run it with the loader and libraries of the layer,
		// whatever hostRoot holds.
		argv = []string{"/.testbed/lib/ld-linux-x86-64.so.2", "--library-path", "/.testbed/lib", argv[0]}
	}
	argv = append(argv, "--config", configPath, "config", "dump")
	// In a private mount namespace the overlay disappears with the process.
	script := `mount -t overlay overlay -o "ro,lowerdir=$1:$2" "$3" && shift 3 && exec chroot "$@"`
	args := append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", layer, hostRoot, mnt, mnt}, argv...)
	cmd := exec.CommandContext(ctx, "unshare", args...)
	cmd.Env = []string{podPath}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("containerd (%s) config dump of %s in %s: %w: %s", flavour, configPath, hostRoot, err, tail(stderr.Bytes(), 4096))
	}
	return stdout.Bytes(), nil
}

// CRIOConfig runs the real CRI-O as `crio --config "" --config-dir confDir config` and
// returns the effective configuration: CRI-O's defaults with the drop-ins of confDir
// applied in lexical order.
func CRIOConfig(ctx context.Context, confDir string) ([]byte, error) {
	e, err := loadEnv()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, e.crio, "--config", "", "--config-dir", confDir, "config")
	cmd.Env = []string{podPath}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("crio config of %s: %w: %s", confDir, err, tail(stderr.Bytes(), 4096))
	}
	return stdout.Bytes(), nil
}
