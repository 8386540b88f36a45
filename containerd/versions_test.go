package containerd

import (
	"testing"

	"gotest.tools/v3/assert"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// The table must describe a history: versions numbered in order, each
// first read by a later release than the one before, written by default
// from its first reader until the next version's.
func TestConfigVersionsTable(t *testing.T) {
	all := configVersions()
	for i, cv := range all {
		assert.Equal(t, cv.version, all[0].version+i)
		assert.Check(t, cv.criPlugin != "", cv.version)
		assert.Check(t, cv.distroDropIns != "", cv.version)
		if i == 0 {
			continue
		}
		prev := all[i-1]
		assert.Check(t, cv.firstReader.Compare(prev.firstReader) > 0, cv.version)
		assert.Check(t, prev.lastDefault != (runtime.Version{}), "only the newest version is the current default, not %d", prev.version)
		assert.Check(t, prev.lastDefault.Compare(cv.firstReader) < 0, "version %d was still the default when %d was first read", prev.version, cv.version)
		assert.Check(t, prev.lastDefault.Compare(prev.firstReader) >= 0, prev.version)
	}
	assert.Equal(t, all[len(all)-1].lastDefault, runtime.Version{}, "the newest version is the current default")
}

func TestVersionDecisions(t *testing.T) {
	for _, c := range []struct {
		release         string
		newest, written int
		merges          bool
	}{
		{"1.2.13", 1, 1, false},
		{"1.6.20", 2, 2, false},
		{"1.7.22-k3s1", 2, 2, false},
		{"2.0.0", 3, 3, false},
		{"2.1.4", 3, 3, true},
		{"2.2.9", 3, 3, true},
		{"2.3.0", 4, 3, true},
	} {
		v, err := runtime.ParseVersion(c.release)
		assert.NilError(t, err)
		assert.Check(t, newestReadable(v) == c.newest, c.release)
		assert.Check(t, writeVersion(v) == c.written, c.release)
		assert.Check(t, mergesImports(v) == c.merges, c.release)
	}
}
