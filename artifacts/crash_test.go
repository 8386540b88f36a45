package artifacts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	"gotest.tools/v3/fs"
)

// crashJob is what the child process is asked to do.
type crashJob struct {
	Op         string // "install" or "uninstall"
	Host       string
	Payload    string
	KillAt     int64 // SIGKILL itself at this step (1-based); 0 counts steps
	NoExchange bool
	Debug      bool
}

func (j crashJob) options(hook func(string)) []Option {
	opts := []Option{withStepHook(hook)}
	if j.NoExchange {
		opts = append(opts, withoutExchange())
	}
	if j.Debug {
		opts = append(opts, WithDebug())
	}
	return opts
}

func (j crashJob) run(hook func(string)) error {
	var err error
	switch j.Op {
	case "install":
		_, err = Install(context.Background(), j.Host, j.Payload, j.options(hook)...)
	case "uninstall":
		_, err = Uninstall(context.Background(), j.Host, j.options(hook)...)
	}
	return err
}

// TestCrashHelper is the child process of the crash tests: it runs a job
// and kills itself with SIGKILL, no deferred cleanup, at a step boundary.
func TestCrashHelper(t *testing.T) {
	spec := os.Getenv("KATA_DEPLOY_CRASH_JOB")
	if spec == "" {
		t.Skip("child process of the crash tests")
	}
	var j crashJob
	assert.NilError(t, json.Unmarshal([]byte(spec), &j))
	var n atomic.Int64
	err := j.run(func(string) {
		if n.Add(1) == j.KillAt {
			_ = unix.Kill(os.Getpid(), unix.SIGKILL)
			select {}
		}
	})
	assert.NilError(t, err)
	t.Fatalf("never reached step %d (%d steps)", j.KillAt, n.Load())
}

func runKilled(t *testing.T, j crashJob) {
	t.Helper()
	data, err := json.Marshal(j)
	assert.NilError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$")
	cmd.Env = append(os.Environ(), "KATA_DEPLOY_CRASH_JOB="+string(data))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	assert.Assert(t, errors.As(err, &ee), "child was not killed: %v\n%s", err, out)
	ws, _ := ee.Sys().(syscall.WaitStatus)
	assert.Assert(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "child exited: %v\n%s", err, out)
}

// TestCrashAtEveryStepConverges kills an install or uninstall at every step
// boundary, checks that the destination holds a whole tree (old or new),
// then runs again and checks that the host converges to the expected tree,
// with nothing left beside it.
func TestCrashAtEveryStepConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	v1, v2 := kataStatic("v1"), kataStatic("v2").with(payloadSpec{
		"bin/kata-monitor": {mode: 0o755, data: "monitor"},
	}, "bin/cloud-hypervisor")
	v2gen := generatedEntries()
	// Manifests are read once (their content is a reader): build anew.
	empty := func(t *testing.T) fs.Manifest { return expected(t, payloadSpec{}) }
	static1 := func(t *testing.T) fs.Manifest { return expectedStatic(t, "v1") }
	static2 := func(t *testing.T) fs.Manifest { return expected(t, installed(v2, "opt/kata", v2gen)) }

	type scenario struct {
		name    string
		setup   func(t *testing.T, host string) // the state before the job
		job     crashJob                        // Host is filled in
		oldTree func(*testing.T) fs.Manifest    // nil: not checked
		oldNone bool                            // the destination did not exist
		gap     string                          // step after which a missing destination is expected
		newTree func(*testing.T) fs.Manifest
	}
	scenarios := []scenario{
		{
			name:    "fresh install",
			job:     crashJob{Op: "install", Payload: payloadDir(t, v1)},
			oldNone: true,
			newTree: static1,
		},
		{
			name:    "upgrade",
			setup:   func(t *testing.T, host string) { mustInstall(t, host, payloadDir(t, v1)) },
			job:     crashJob{Op: "install", Payload: payloadDir(t, v2)},
			oldTree: static1,
			newTree: static2,
		},
		{
			name:  "upgrade without RENAME_EXCHANGE",
			setup: func(t *testing.T, host string) { mustInstall(t, host, payloadDir(t, v1)) },
			job:   crashJob{Op: "install", Payload: payloadDir(t, v2), NoExchange: true},
			// Without an exchange, the destination is missing between the
			// two renames; the rerun rolls back.
			gap:     "moved-old",
			oldTree: static1,
			newTree: static2,
		},
		{
			name:    "upgrade from tar.zst",
			setup:   func(t *testing.T, host string) { mustInstall(t, host, payloadDir(t, v1)) },
			job:     crashJob{Op: "install", Payload: v2.tarball(t, "zst")},
			oldTree: static1,
			newTree: static2,
		},
		{
			name:  "uninstall",
			setup: func(t *testing.T, host string) { mustInstall(t, host, payloadDir(t, v1), WithDebug()) },
			job:   crashJob{Op: "uninstall", Debug: true},
			// Uninstall removes file by file: in between, the record
			// still lists what is left, and the rerun finishes.
			newTree: empty,
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			// Count the steps on a scratch host.
			scratch := newHost(t)
			if sc.setup != nil {
				sc.setup(t, scratch)
			}
			var steps []string
			j := sc.job
			j.Host = scratch
			assert.NilError(t, j.run(func(s string) { steps = append(steps, s) }))
			assert.Assert(t, len(steps) > 3, "steps: %v", steps)

			for _, k := range crashPoints(steps) {
				t.Run(fmt.Sprintf("%02d-%s", k, steps[k-1]), func(t *testing.T) {
					host := newHost(t)
					if sc.setup != nil {
						sc.setup(t, host)
					}
					j := sc.job
					j.Host, j.KillAt = host, int64(k)
					runKilled(t, j)
					if sc.oldTree != nil || sc.oldNone {
						// Whatever lies beside it, the destination is whole.
						dest := filepath.Join(host, "opt/kata")
						var oldOK bool
						if _, err := os.Lstat(dest); err != nil {
							oldOK = sc.oldNone || steps[k-1] == sc.gap
						} else if sc.oldTree != nil {
							oldOK = sameTree(t, dest, sc.oldTree(t))
						}
						newOK := sameTree(t, dest, sc.newTree(t))
						assert.Check(t, oldOK || newOK, "after a crash at %s, %s is neither tree:\n%s", steps[k-1], dest, listing(snapshot(t, host)))
					}
					// The next run finishes or rolls back, then converges.
					j.KillAt = 0
					assert.NilError(t, j.run(nil))
					assert.Assert(t, fs.Equal(host, sc.newTree(t)))
					if j.Op == "install" {
						rep, err := Install(context.Background(), host, j.Payload, j.options(nil)...)
						assert.NilError(t, err)
						assert.Check(t, !rep.HasChanges(), rep.String())
					}
				})
			}
		})
	}
}

// crashPoints picks the steps to crash at: every distinct step, and for
// steps repeated per file two of them, chosen by a fixed seed.
func crashPoints(steps []string) []int {
	rnd := rand.New(rand.NewPCG(7, uint64(len(steps))))
	byName := map[string][]int{}
	var names []string
	for i, s := range steps {
		if byName[s] == nil {
			names = append(names, s)
		}
		byName[s] = append(byName[s], i+1)
	}
	var out []int
	for _, n := range names {
		ks := byName[n]
		if len(ks) <= 2 {
			out = append(out, ks...)
			continue
		}
		rnd.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
		out = append(out, ks[:2]...)
	}
	slices.Sort(out)
	return out
}

// sameTree tells whether dest holds the opt/kata part of want, ignoring
// what lies beside it (staging, the old tree): a copy of dest is compared.
func sameTree(t *testing.T, dest string, want fs.Manifest) bool {
	t.Helper()
	if _, err := os.Lstat(dest); err != nil {
		return false
	}
	tmp := t.TempDir()
	assert.NilError(t, os.Chmod(tmp, 0o755))
	assert.NilError(t, os.Mkdir(filepath.Join(tmp, "opt"), 0o755))
	out, err := exec.Command("cp", "-a", dest, filepath.Join(tmp, "opt/kata")).CombinedOutput()
	assert.NilError(t, err, string(out))
	return fs.Equal(tmp, want)().Success()
}

func mustInstall(t *testing.T, host, payload string, opts ...Option) {
	t.Helper()
	_, err := Install(context.Background(), host, payload, opts...)
	assert.NilError(t, err)
}
