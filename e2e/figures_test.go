package e2e

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

// TestFigures measures, per flavour, the time from the installer's start
// to kata-runtime=true (median of 5 installs, each on a freshly
// uninstalled node), the runtime restart within it (from systemd's
// "Stopping" to "Started" journal entries), and the no-op re-run. It logs
// the figures and asserts no time: run with KATA_E2E_FIGURES=1.
func TestFigures(t *testing.T) {
	if os.Getenv("KATA_E2E_FIGURES") != "1" {
		t.Skip("figures only with KATA_E2E_FIGURES=1")
	}
	const rounds = 5
	forEachFlavour(t, func(t *testing.T, c *cluster, f testbed.Flavour) {
		uc := userConfigFor(f)
		n := c.startNode(t, f, testbed.WithFile(uc.path, []byte(uc.content), 0o644))
		unit := n.RuntimeUnit()
		var toLabel, restart, noop, uninstall []time.Duration
		for range rounds {
			since := time.Now()
			p := n.start(t, "kata-installer", n.env("kata-installer", "KATA_ONCE=true"))
			toLabel = append(toLabel, c.waitLabel(t, n.Name(), kataLabel, "true", 3*time.Minute))
			if err := p.wait(t, 3*time.Minute); err != nil {
				t.Fatalf("install: %v\n%s", err, p.out.String())
			}
			restart = append(restart, restartTook(t, n, unit, since))
			noop = append(noop, timed(func() { n.mustInstall(t) }))
			uninstall = append(uninstall, timed(func() { n.mustUninstall(t) }))
			// Stay under systemd's start limit (5 starts in 10 s): a round
			// restarts the runtime twice, and a refused restart is retried,
			// which would show in the figures.
			time.Sleep(5 * time.Second)
		}
		t.Logf("FIGURES %s: start to %s=true median %s (all %v); runtime restart median %s (all %v); no-op re-run median %s; uninstall median %s",
			f, kataLabel, median(toLabel), ms(toLabel), median(restart), ms(restart), median(noop), median(uninstall))
	})
}

// restartTook is how long the unit's last restart after since took, from
// systemd's journal: "Stopping" to "Started".
func restartTook(t *testing.T, n *node, unit string, since time.Time) time.Duration {
	t.Helper()
	out, err := n.Exec(context.Background(), "journalctl", "--no-pager", "-o", "short-unix", "-u", unit, "_PID=1")
	must(t, err)
	var stop, started time.Time
	for _, l := range strings.Split(string(out), "\n") {
		stamp, msg, _ := strings.Cut(l, " ")
		sec, err := strconv.ParseFloat(stamp, 64)
		if err != nil {
			continue
		}
		at := time.UnixMicro(int64(sec * 1e6))
		if at.Before(since) {
			continue
		}
		switch {
		case strings.Contains(msg, "Stopping ") && stop.IsZero():
			stop = at
		case strings.Contains(msg, "Started ") && !stop.IsZero() && started.IsZero():
			started = at
		}
	}
	if stop.IsZero() || started.IsZero() {
		t.Errorf("no restart of %s in the journal after %s", unit, since)
		return 0
	}
	return started.Sub(stop)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}

func ms(d []time.Duration) []string {
	var out []string
	for _, x := range d {
		out = append(out, x.Round(time.Millisecond).String())
	}
	return out
}
