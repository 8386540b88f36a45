package cri

import (
	"context"
	"fmt"
	"time"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// Lister is what WaitServing needs of a CRI client.
type Lister interface {
	Handlers(ctx context.Context) ([]string, error)
}

// WaitServing asks c, every interval, for the handlers the runtime serves
// until it serves every one of want, or ctx ends. It then returns the
// last answer: a *runtime.NotServingError naming the missing handlers, or
// why the runtime did not answer. socket names the socket in errors.
func WaitServing(ctx context.Context, c Lister, socket string, want []string, every time.Duration) error {
	for {
		err := servesAll(ctx, c, socket, want)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(every):
		}
	}
}

func servesAll(ctx context.Context, c Lister, socket string, want []string) error {
	have, err := c.Handlers(ctx)
	if err != nil {
		return fmt.Errorf("the runtime does not answer on %s: %w", socket, err)
	}
	if missing := MissingFrom(have, want); len(missing) > 0 {
		return &runtime.NotServingError{Socket: socket, Missing: missing}
	}
	return nil
}
