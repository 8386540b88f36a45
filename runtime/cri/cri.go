package cri

import (
	"context"
	"fmt"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/cri"
	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// DefaultTimeout bounds Verify and Handlers when ctx has no deadline: a
// runtime restarted on its new config serves its handlers within seconds,
// and one that does not answer must not hang the caller.
const DefaultTimeout = 2 * time.Minute

// Verify waits until the container runtime of variant v on the host whose
// root directory is hostRoot serves every handler of spec, asking its CRI
// socket (v.CRISocket(), resolved under hostRoot) twice a second, until
// ctx ends (or DefaultTimeout passes, when ctx has no deadline). It then
// returns a *runtime.NotServingError naming the handlers still missing, or
// why the runtime does not answer.
func Verify(ctx context.Context, hostRoot string, v runtime.Variant, spec runtime.Spec) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	c, err := dial(hostRoot, v)
	if err != nil {
		return err
	}
	defer c.Close()
	return cri.WaitServing(ctx, c, v.CRISocket(), spec.HandlerNames(), 500*time.Millisecond)
}

// Handlers returns the runtime handlers the container runtime of variant v
// serves now, sorted, without the unnamed default. It gives up when ctx
// ends, or after DefaultTimeout when ctx has no deadline.
func Handlers(ctx context.Context, hostRoot string, v runtime.Variant) ([]string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	c, err := dial(hostRoot, v)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Handlers(ctx)
}

// dial refuses a host root or variant that would have it ask some other
// socket than the host runtime's (see hostfs.CheckRoot, Variant.Validate),
// and a socket path too long to dial.
func dial(hostRoot string, v runtime.Variant) (*cri.Client, error) {
	if err := v.Validate(); err != nil {
		return nil, fmt.Errorf("CRI: %w", err)
	}
	root, err := hostfs.New(hostRoot)
	if err != nil {
		return nil, fmt.Errorf("CRI: %w", err)
	}
	return cri.DialUnder(root, v.CRISocket())
}
