package crio_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/crio"
	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
)

func crioHost(t *testing.T) string {
	t.Helper()
	host := t.TempDir()
	assert.NilError(t, os.MkdirAll(filepath.Join(host, "etc/crio"), 0o755))
	return host
}

func crioSpec(t *testing.T, opts ...kataruntime.HandlerOption) kataruntime.Spec {
	t.Helper()
	hs, err := kataruntime.Handlers([]string{"qemu"}, opts...)
	assert.NilError(t, err)
	return kataruntime.Spec{Handlers: hs, Mode: kataruntime.ModeRuntimeClass}
}

var v134 = kataruntime.Version{Major: 1, Minor: 34}

func TestNilLoggerDiscards(t *testing.T) {
	e, err := crio.New(crioHost(t), v134, crio.WithLogger(nil))
	assert.NilError(t, err)
	ctx := context.Background()
	plan, err := e.PlanInstall(ctx, crioSpec(t))
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, plan)) // logs each change
}

func TestEngineNameMustBeSafeInAFileName(t *testing.T) {
	for _, bad := range []string{"", "../../etc/passwd", "a/b", ".hidden", "x y"} {
		_, err := crio.New(crioHost(t), v134, crio.WithName(bad))
		assert.Check(t, is.ErrorContains(err, "engine name"), "%q", bad)
	}
}

// A second install that keeps the first one's engine name would rewrite
// its drop-in with other handlers: it is refused, naming the fix.
func TestSecondInstallNeedsItsOwnName(t *testing.T) {
	ctx := context.Background()
	host := crioHost(t)
	first, err := crio.New(host, v134)
	assert.NilError(t, err)
	plan, err := first.PlanInstall(ctx, crioSpec(t))
	assert.NilError(t, err)
	assert.NilError(t, first.Apply(ctx, plan))

	before := hosttest.Snapshot(t, host)
	_, err = first.PlanInstall(ctx, crioSpec(t, kataruntime.WithSuffix("canary")))
	assert.Check(t, is.DeepEqual(before, hosttest.Snapshot(t, host)), "the refused plan changed the host")
	assert.Check(t, is.ErrorContains(err, "records another install under this engine name (handlers kata, kata-qemu)"))
	assert.Check(t, is.ErrorContains(err, "crio.WithName"))

	second, err := crio.New(host, v134, crio.WithName("kata-deploy-canary"))
	assert.NilError(t, err)
	plan, err = second.PlanInstall(ctx, crioSpec(t, kataruntime.WithSuffix("canary")))
	assert.NilError(t, err)
	assert.NilError(t, second.Apply(ctx, plan))
}

func TestApplyWithEndedContextWritesNothing(t *testing.T) {
	host := crioHost(t)
	e, err := crio.New(host, v134)
	assert.NilError(t, err)
	plan, err := e.PlanInstall(context.Background(), crioSpec(t))
	assert.NilError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := hosttest.Snapshot(t, host)
	assert.Check(t, errors.Is(e.Apply(ctx, plan), context.Canceled))
	assert.Check(t, is.DeepEqual(before, hosttest.Snapshot(t, host)), "no drop-in, no journal")
	written, err := e.ConfigWritten()
	assert.NilError(t, err)
	assert.Check(t, written.IsZero())
}

// The CRI-O engine refuses a plan of its own made under another name, as
// it refuses containerd's (see containerd's TestForeignPlanRefused).
func TestForeignPlanRefused(t *testing.T) {
	ctx := context.Background()
	host := crioHost(t)
	a, err := crio.New(host, v134, crio.WithName("a"))
	assert.NilError(t, err)
	b, err := crio.New(host, v134, crio.WithName("b"))
	assert.NilError(t, err)
	plan, err := a.PlanInstall(ctx, crioSpec(t))
	assert.NilError(t, err)
	var fe *kataruntime.ForeignPlanError
	assert.Assert(t, errors.As(b.Apply(ctx, plan), &fe))
	assert.Check(t, is.Equal(fe.Made, "crio/a"))
}
