package containerd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/containerd"
	"github.com/kata-deploy/kata-deploy/crio"
	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
	kataruntime "github.com/kata-deploy/kata-deploy/runtime"
)

// These tests compose the public packages as another installer would, and
// check that each way of combining them wrongly is an error that changes
// nothing.

func containerdHost(t *testing.T) string {
	t.Helper()
	host := t.TempDir()
	p := filepath.Join(host, "etc/containerd/config.toml")
	assert.NilError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	assert.NilError(t, os.WriteFile(p, []byte("version = 3\n"), 0o644))
	return host
}

func spec(t *testing.T, opts ...kataruntime.HandlerOption) kataruntime.Spec {
	t.Helper()
	hs, err := kataruntime.Handlers([]string{"qemu"}, opts...)
	assert.NilError(t, err)
	return kataruntime.Spec{Handlers: hs, Mode: kataruntime.ModeRuntimeClass}
}

func v22() kataruntime.Version { return kataruntime.Version{Major: 2, Minor: 2, Patch: 9} }

func TestNilLoggerDiscards(t *testing.T) {
	host := containerdHost(t)
	e, err := containerd.New(host, kataruntime.VariantContainerd, v22(), containerd.WithLogger(nil))
	assert.NilError(t, err)
	ctx := context.Background()
	plan, err := e.PlanInstall(ctx, spec(t))
	assert.NilError(t, err)
	assert.NilError(t, e.Apply(ctx, plan)) // logs each change
}

func TestEngineNameMustBeSafeInAFileName(t *testing.T) {
	host := containerdHost(t)
	for _, bad := range []string{"", "../etc", "a/b", "-x", "kata deploy", "x\n"} {
		_, err := containerd.New(host, kataruntime.VariantContainerd, v22(), containerd.WithName(bad))
		assert.Check(t, is.ErrorContains(err, "engine name"), "%q", bad)
	}
	_, err := containerd.New(host, kataruntime.VariantContainerd, v22(), containerd.WithName("kata-deploy-canary.v2_1"))
	assert.NilError(t, err)
}

// A second install that keeps the first one's engine name would replace
// the first one's handlers: it is refused, naming the fix.
func TestSecondInstallNeedsItsOwnName(t *testing.T) {
	ctx := context.Background()
	host := containerdHost(t)
	first, err := containerd.New(host, kataruntime.VariantContainerd, v22())
	assert.NilError(t, err)
	plan, err := first.PlanInstall(ctx, spec(t))
	assert.NilError(t, err)
	assert.NilError(t, first.Apply(ctx, plan))
	before := hosttest.Snapshot(t, host)

	canary := spec(t, kataruntime.WithSuffix("canary"))
	_, err = first.PlanInstall(ctx, canary)
	assert.Check(t, is.ErrorContains(err, "records another install under this engine name (handlers kata, kata-qemu)"))
	assert.Check(t, is.ErrorContains(err, "containerd.WithName"))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))

	// With a name of its own it goes beside the first.
	second, err := containerd.New(host, kataruntime.VariantContainerd, v22(), containerd.WithName("kata-deploy-canary"))
	assert.NilError(t, err)
	plan, err = second.PlanInstall(ctx, canary)
	assert.NilError(t, err)
	assert.NilError(t, second.Apply(ctx, plan))

	// The first install planned again (say, another shim) is itself.
	plan, err = first.PlanInstall(ctx, spec(t, kataruntime.WithDefaultShim("qemu")))
	assert.NilError(t, err)
	assert.Check(t, plan.Empty())
}

// A plan made by one engine is refused by another: the CRI-O engine must
// not write containerd's drop-in, nor an engine of another name the files
// of this one.
func TestForeignPlanRefused(t *testing.T) {
	ctx := context.Background()
	host := containerdHost(t)
	e, err := containerd.New(host, kataruntime.VariantContainerd, v22())
	assert.NilError(t, err)
	plan, err := e.PlanInstall(ctx, spec(t))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(plan.Engine, "containerd/kata-deploy"))
	before := hosttest.Snapshot(t, host)

	c, err := crio.New(host, kataruntime.Version{Major: 1, Minor: 34})
	assert.NilError(t, err)
	other, err := containerd.New(host, kataruntime.VariantContainerd, v22(), containerd.WithName("other"))
	assert.NilError(t, err)
	for _, applier := range []kataruntime.ConfigEngine{c, other} {
		err = applier.Apply(ctx, plan)
		var fe *kataruntime.ForeignPlanError
		assert.Check(t, errors.As(err, &fe), "%v", err)
	}
	hand := &kataruntime.Plan{Kind: kataruntime.Install, Changes: plan.Changes}
	assert.Check(t, is.ErrorContains(e.Apply(ctx, hand), "made by no engine"))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
}

// An ended context writes nothing, not even the journal, so ConfigWritten
// reports no write.
func TestApplyWithEndedContextWritesNothing(t *testing.T) {
	host := containerdHost(t)
	e, err := containerd.New(host, kataruntime.VariantContainerd, v22())
	assert.NilError(t, err)
	plan, err := e.PlanInstall(context.Background(), spec(t))
	assert.NilError(t, err)
	before := hosttest.Snapshot(t, host)

	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	err = e.Apply(ctx, plan)
	assert.Check(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, host), before))
	written, err := e.ConfigWritten()
	assert.NilError(t, err)
	assert.Check(t, written.IsZero(), "ConfigWritten reports %s", written)
}

// A file changed between plan and apply is the public stale-plan error.
func TestStalePlanIsPublic(t *testing.T) {
	ctx := context.Background()
	host := containerdHost(t)
	e, err := containerd.New(host, kataruntime.VariantContainerd, v22())
	assert.NilError(t, err)
	plan, err := e.PlanInstall(ctx, spec(t))
	assert.NilError(t, err)
	assert.NilError(t, os.WriteFile(filepath.Join(host, "etc/containerd/config.toml"), []byte("version = 3\n# mine\n"), 0o644))
	err = e.Apply(ctx, plan)
	assert.Check(t, errors.Is(err, kataruntime.ErrStalePlan), "%v", err)
	var se *kataruntime.StalePlanError
	assert.Assert(t, errors.As(err, &se))
	assert.Check(t, is.Equal(se.Path, "/etc/containerd/config.toml"))
}

// Handlers built by hand are checked before anything is planned.
func TestHandBuiltHandlersValidated(t *testing.T) {
	host := containerdHost(t)
	e, err := containerd.New(host, kataruntime.VariantContainerd, v22())
	assert.NilError(t, err)
	s := spec(t)
	s.Handlers[1].Name = "kata]\n[evil"
	_, err = e.PlanInstall(context.Background(), s)
	assert.Check(t, is.ErrorContains(err, "want a DNS-1123 label"))
	s = spec(t)
	s.Handlers[1].ShimPath = "kata/bin/containerd-shim-kata-v2"
	_, err = e.PlanInstall(context.Background(), s)
	assert.Check(t, is.ErrorContains(err, "want an absolute, clean host path"))
}
