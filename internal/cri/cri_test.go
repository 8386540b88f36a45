package cri

import (
	"fmt"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// containerd 1.6 sends no runtime_handlers; its verbose status config is
// the only place its handlers show.
func TestHandlersFromConfig(t *testing.T) {
	names, err := handlersFromConfig(`{"containerd":{"defaultRuntimeName":"runc","runtimes":{"runc":{},"kata-qemu":{"runtimeType":"io.containerd.kata-qemu.v2"}}}}`)
	assert.NilError(t, err)
	assert.Check(t, is.Len(names, 2))
	names, err = handlersFromConfig("")
	assert.NilError(t, err)
	assert.Check(t, is.Len(names, 0))
	_, err = handlersFromConfig("{not json")
	assert.ErrorContains(t, err, "parse CRI config")
}

// A socket path sun_path cannot hold is refused by Dial, which makes no
// connection, rather than by every call retrying it until its deadline.
func TestDialRefusesSocketPathTooLong(t *testing.T) {
	for _, tc := range []struct {
		n  int
		ok bool
	}{{n: 107, ok: true}, {n: 108}, {n: 300}} {
		p := "/" + strings.Repeat("s", tc.n-1)
		c, err := Dial(p)
		if tc.ok {
			assert.Check(t, err, tc.n)
			if c != nil {
				c.Close()
			}
			continue
		}
		assert.Check(t, is.ErrorContains(err, fmt.Sprintf("path of %d bytes, longer than the 107 a unix socket address holds", tc.n)))
	}
}
