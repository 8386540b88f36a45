package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newLogDir makes a directory for the logs of one component of one test. It is removed
// when the test passes and kept, with its path printed, when the test fails (or always
// when KATA_DEPLOY_TESTBED_KEEP_LOGS is set). Register it before the component's own
// cleanup so that cleanup can still write final logs (t.Cleanup runs last-in first-out).
func newLogDir(t testing.TB, what string) string {
	t.Helper()
	base := os.Getenv("KATA_DEPLOY_TESTBED_LOGS")
	if base == "" {
		base = filepath.Join(os.TempDir(), "kata-deploy-testbed-logs")
	}
	dir := filepath.Join(base, sanitize(t.Name())+"-"+what+"-"+randHex(3))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testbed: log dir: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("KATA_DEPLOY_TESTBED_KEEP_LOGS") != "" {
			t.Logf("testbed: logs of %s kept in %s", what, dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	return hex.EncodeToString(b)
}
