package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// withTree returns options that place every file under dir into a node at the same path.
func withTree(t *testing.T, dir string) []NodeOption {
	t.Helper()
	var opts []NodeOption
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		opts = append(opts, WithFile("/"+rel, data, 0o644))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

// TestLiveDaemonAgreesWithDump boots nodes with the imports-merge cases and reads the
// daemon's own view (CRI Status): the running containerd agrees with `config dump`.
func TestLiveDaemonAgreesWithDump(t *testing.T) {
	Require(t)
	cases := []struct {
		flavour     Flavour
		dir         string
		extra       []NodeOption
		wantKata    bool
		wantRunc    bool
		wantSandbox string
	}{
		// containerd 1.6: the import replaced the CRI table: default sandbox, no runc.
		// (It also breaks the CRI plugin: see TestContainerd16ImportBreaksCRI.)
		// containerd 2.2 merges the import: user settings and kata.
		{Containerd2, "v3-import", nil, true, true, userSandbox},
		// containerd 2.2 without a config file ignores /etc/containerd/conf.d.
		{Containerd2, "noconfig-dropin", nil, false, true, def22Sandbox},
	}
	for _, tc := range cases {
		t.Run(string(tc.flavour)+"/"+tc.dir, func(t *testing.T) {
			t.Parallel()
			opts := withTree(t, filepath.Join("testdata", "containerd-imports", tc.dir))
			n := StartNode(t, tc.flavour, opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			info, err := n.CRIStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				SandboxImage string `json:"sandboxImage"`
				Containerd   struct {
					Runtimes map[string]json.RawMessage `json:"runtimes"`
				} `json:"containerd"`
			}
			if err := json.Unmarshal([]byte(info["config"]), &cfg); err != nil {
				t.Fatalf("CRI config: %v", err)
			}
			_, kata := cfg.Containerd.Runtimes["kata"]
			_, runc := cfg.Containerd.Runtimes["runc"]
			if kata != tc.wantKata || runc != tc.wantRunc {
				t.Errorf("live runtimes kata=%v runc=%v, want kata=%v runc=%v", kata, runc, tc.wantKata, tc.wantRunc)
			}
			if tc.flavour == Containerd16 && cfg.SandboxImage != tc.wantSandbox {
				t.Errorf("live sandbox image %q, want %q", cfg.SandboxImage, tc.wantSandbox)
			}
			handlers, err := n.RuntimeHandlers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s handlers: %v; sandbox %q", n.RuntimeVersion(), handlers, cfg.SandboxImage)
		})
	}
}

// TestContainerd16ImportBreaksCRI: on containerd 1.6 an import holding only
// runtimes.kata replaces the CRI plugin table, runc disappears, and the CRI plugin does
// not load at all (default_runtime_name "runc" has no runtime). containerd.service stays
// active: only CRI calls show it.
func TestContainerd16ImportBreaksCRI(t *testing.T) {
	Require(t)
	t.Parallel()
	n := StartNode(t, Containerd16, append(withTree(t, filepath.Join("testdata", "containerd-imports", "v2-import")), WithoutCRIWait())...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var criErr error
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, criErr = n.CRIStatus(ctx); criErr == nil {
			t.Fatal("CRI answers; want the CRI plugin not loaded")
		}
	}
	if code := status.Code(errors.Unwrap(criErr)); code != codes.Unimplemented {
		t.Errorf("CRI error %v (code %s), want Unimplemented", criErr, code)
	}
	journal, err := n.Exec(ctx, "journalctl", "--no-pager", "-u", "containerd.service")
	if err != nil {
		t.Fatal(err)
	}
	const msg = "no corresponding runtime configured in `containerd.runtimes` for `containerd` `default_runtime_name"
	if !strings.Contains(string(journal), msg) {
		t.Errorf("journal lacks %q", msg)
	}
	if s, err := n.UnitActiveState(ctx, n.RuntimeUnit()); err != nil || s != "active" {
		t.Errorf("containerd.service %q, %v; want still active", s, err)
	}
}
