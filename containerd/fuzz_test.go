package containerd

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// FuzzInstallRevert checks, for any config the engine accepts, that the
// installed file parses and that install then uninstall gives back the
// exact bytes and leaves the host tree as it was (no shim link, no
// journal), on both edit strategies; and that a config it refuses leaves
// the host untouched.
func FuzzInstallRevert(f *testing.F) {
	for _, dir := range []string{configs, "testdata/bad"} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			f.Fatal(err)
		}
		for _, en := range entries {
			data, err := os.ReadFile(filepath.Join(dir, en.Name()))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data, true)
			f.Add(data, false)
		}
	}
	hs, err := runtime.Handlers([]string{"qemu", "fc"}, runtime.WithSnapshotter("fc", "devmapper"))
	if err != nil {
		f.Fatal(err)
	}
	// containerd 1.6 has no per-runtime snapshotter, and refuses fc's: it
	// gets handlers without one, or its strategy would never be fuzzed.
	hs16, err := runtime.Handlers([]string{"qemu", "clh"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, config []byte, merges bool) {
		// go-toml's decoding time grows faster than the input; huge inputs
		// only slow the search down (the benchmarks cover size).
		if len(config) > 32<<10 {
			return
		}
		// A hang is a bug too: fail, so the fuzzer keeps the input.
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				panic(fmt.Sprintf("install/uninstall hung on %q (merges %t)", config, merges))
			}
		}()
		host := t.TempDir()
		p := filepath.Join(host, "etc/containerd/config.toml")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, config, 0o644); err != nil {
			t.Fatal(err)
		}
		v := runtime.Version{Major: 1, Minor: 6, Patch: 20}
		spec := runtime.Spec{Handlers: hs16, Mode: runtime.ModeRuntimeClass}
		if merges {
			v = runtime.Version{Major: 2, Minor: 2, Patch: 9}
			spec.Handlers = hs
		}
		e, err := New(host, runtime.VariantContainerd, v)
		if err != nil {
			t.Fatal(err)
		}
		before := hosttest.Snapshot(t, host)
		plan, err := e.PlanInstall(context.Background(), spec)
		if err != nil {
			// Refused: nothing may have been written.
			if after := hosttest.Snapshot(t, host); !maps.Equal(after, before) {
				t.Fatalf("a refused plan (%v) changed the host:\nbefore %q\nafter  %q", err, before, after)
			}
			return
		}
		ctx := context.Background()
		if err := e.Apply(ctx, plan); err != nil {
			t.Fatalf("apply: %v", err)
		}
		for _, c := range plan.Changes {
			if c.Op == runtime.Create || c.Op == runtime.Modify {
				if _, err := parseDocument(context.Background(), c.Path, c.After, e.name); err != nil {
					t.Fatalf("installed %s does not parse: %v\n%s", c.Path, err, c.After)
				}
			}
		}
		again, err := e.PlanInstall(context.Background(), spec)
		if err != nil || !again.Empty() {
			t.Fatalf("second install not a no-op (err %v):\n%s", err, again.Diff())
		}
		undo, err := e.PlanUninstall(context.Background())
		if err != nil {
			t.Fatalf("plan uninstall: %v", err)
		}
		if err := e.Apply(ctx, undo); err != nil {
			t.Fatalf("uninstall: %v", err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, config) {
			t.Fatalf("install+uninstall changed the config:\nbefore %q\nafter  %q", config, got)
		}
		// The shim links containerd 1.6 needs, the directories made for
		// them and the journal are gone too: the whole tree is as it was.
		if after := hosttest.Snapshot(t, host); !maps.Equal(after, before) {
			t.Fatalf("install+uninstall changed the host:\nbefore %q\nafter  %q", before, after)
		}
	})
}
