package installer

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// client-go's reflector lists with watch-list semantics by default,
	// which client-go's fake clientset does not serve: behind nodelabel's
	// own ListWatch the reflector cannot tell, and waits forever for the
	// initial list. A real API server serves it; the fake needs the plain
	// list. client-go reads the gate from the environment once.
	os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}
