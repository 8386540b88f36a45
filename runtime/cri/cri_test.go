package cri_test

import (
	"context"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/runtime"
	"github.com/kata-deploy/kata-deploy/runtime/cri"
)

// A host whose runtime has no socket: Verify says which socket did not
// answer once ctx ends, rather than waiting for DefaultTimeout.
// (TestAnotherInstallerOnRealNodes verifies real runtimes.)
func TestVerifyNoRuntime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	hs, err := runtime.Handlers([]string{"qemu"})
	assert.NilError(t, err)
	err = cri.Verify(ctx, t.TempDir(), runtime.VariantContainerd, runtime.Spec{Handlers: hs})
	assert.Check(t, is.ErrorContains(err, "the runtime does not answer on /run/containerd/containerd.sock"))
	_, err = cri.Handlers(ctx, t.TempDir(), runtime.VariantCRIO)
	assert.Check(t, err != nil)
}
