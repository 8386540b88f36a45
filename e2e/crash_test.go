package e2e

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

// crashSeed is the seed of the kill points: KATA_E2E_SEED to replay a run,
// else the clock. Each flavour draws from its own stream of it.
func crashSeed(t *testing.T) uint64 {
	if s := os.Getenv("KATA_E2E_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KATA_E2E_SEED=%q: %v", s, err)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

// crashRounds is how many install kills, each followed by an uninstall
// kill, a flavour gets (KATA_E2E_CRASH_ROUNDS; default 10, so 20 kill
// points).
func crashRounds(t *testing.T) int {
	if s := os.Getenv("KATA_E2E_CRASH_ROUNDS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("KATA_E2E_CRASH_ROUNDS=%q: want a positive number", s)
		}
		return v
	}
	return 10
}

// TestCrashAnywhere kills the installer with SIGKILL at random points of
// an install and of an uninstall, and checks that a plain re-run converges
// each time: after an install, the config a clean install writes, the
// runtime active and serving the handlers, the node labelled; after an
// uninstall, the host byte-identical to the start and the runtime serving
// no Kata handler. One node per flavour serves every kill point.
func TestCrashAnywhere(t *testing.T) {
	seed := crashSeed(t)
	rounds := crashRounds(t)
	t.Logf("seed %d (replay with KATA_E2E_SEED=%d), %d install and %d uninstall kill points per flavour", seed, seed, rounds, rounds)
	forEachFlavour(t, func(t *testing.T, c *cluster, f testbed.Flavour) {
		rng := rand.New(rand.NewPCG(seed, uint64(slices.Index(testbed.Flavours(), f))))
		uc := userConfigFor(f)
		n := c.startNode(t, f, testbed.WithFile(uc.path, []byte(uc.content), 0o644))
		before := hostFiles(t, n, false)

		// Clean runs of each first: the kill delays span their duration,
		// and their result is what every converged re-run must match. The
		// shorter of two: the first install also waits for the Node's
		// status to list the handlers, which the testbed (like a kubelet)
		// updates only every second, and later installs find them listed.
		var installTook, uninstallTook time.Duration
		var installed map[string]string
		for i := range 2 {
			it := timed(func() { n.mustInstall(t) })
			installed = withoutStat(t, hostFiles(t, n, false))
			ut := timed(func() { n.mustUninstall(t) })
			assertSameFiles(t, before, afterUninstall(t, hostFiles(t, n, false)), "the clean uninstall")
			if i == 0 || it < installTook {
				installTook = it
			}
			if i == 0 || ut < uninstallTook {
				uninstallTook = ut
			}
		}
		t.Logf("clean install %s, clean uninstall %s", installTook.Round(time.Millisecond), uninstallTook.Round(time.Millisecond))

		killed := map[string]int{}
		for i := range rounds {
			// A delay up to a little past the clean run's duration: the
			// last stretch checks a run that finished before the kill.
			d := time.Duration(rng.Int64N(int64(installTook * 11 / 10)))
			at := killAfter(t, n, d, "KATA_ONCE=true")
			killed["install "+at]++
			t.Logf("point %d: install killed after %s, %s", 2*i+1, d.Round(time.Millisecond), at)
			n.mustInstall(t)
			if v, _ := c.label(t, n.Name(), kataLabel); v != "true" {
				t.Errorf("point %d: after the re-run the node is labelled %s=%q, want true", 2*i+1, kataLabel, v)
			}
			assertSameFiles(t, installed, withoutStat(t, hostFiles(t, n, false)), "the install re-run after a kill")
			assertRuntime(t, n, true)

			d = time.Duration(rng.Int64N(int64(uninstallTook * 11 / 10)))
			at = killAfter(t, n, d, "", "uninstall")
			killed["uninstall "+at]++
			t.Logf("point %d: uninstall killed after %s, %s", 2*i+2, d.Round(time.Millisecond), at)
			n.mustUninstall(t)
			assertSameFiles(t, before, afterUninstall(t, hostFiles(t, n, false)), "the uninstall re-run after a kill")
			assertRuntime(t, n, false)
			if t.Failed() {
				t.Fatalf("point %d did not converge; replay with KATA_E2E_SEED=%d", 2*i+2, seed)
			}
		}
		t.Logf("where the kills landed (last log message before the kill): %v", killed)
	})
}

// killAfter starts the installer, SIGKILLs it after d, and returns where
// it was: the message of its last log line, or "finished" when it exited
// before the kill.
func killAfter(t *testing.T, n *node, d time.Duration, env string, args ...string) string {
	t.Helper()
	var extra []string
	if env != "" {
		extra = append(extra, env)
	}
	p := n.start(t, "kata-installer", n.env("kata-installer", extra...), args...)
	select {
	case <-p.done:
		return "finished"
	case <-time.After(d):
	}
	p.signal(syscall.SIGKILL)
	<-p.done
	if p.err == nil {
		return "finished"
	}
	return "at " + strconv.Quote(lastMsg(p.out.String()))
}

// lastMsg is the msg of the last slog text line in out ("start" if none).
func lastMsg(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if _, rest, ok := strings.Cut(lines[i], " msg="); ok {
			if strings.HasPrefix(rest, `"`) {
				if s, err := strconv.QuotedPrefix(rest); err == nil {
					msg, _ := strconv.Unquote(s)
					return msg
				}
			}
			msg, _, _ := strings.Cut(rest, " ")
			return msg
		}
	}
	return "start"
}

// withoutStat drops, from the payload's install record, the inode numbers
// and times it keeps of each file to tell a changed file without reading
// it: they differ between any two installs. Everything else in the record
// (paths, modes, sizes, digests) must match.
func withoutStat(t *testing.T, files map[string]string) map[string]string {
	t.Helper()
	for p, data := range files {
		if path.Base(p) != ".kata-deploy-record.json" {
			continue
		}
		var rec map[string]any
		must(t, json.Unmarshal([]byte(data), &rec))
		entries, _ := rec["entries"].([]any)
		for _, e := range entries {
			if m, ok := e.(map[string]any); ok {
				delete(m, "stat")
				delete(m, "src")
			}
		}
		out, err := json.Marshal(rec)
		must(t, err)
		files[p] = string(out)
	}
	return files
}
