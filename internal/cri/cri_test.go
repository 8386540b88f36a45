package cri

import (
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
