package cri_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kata-deploy/kata-deploy/runtime"
	"github.com/kata-deploy/kata-deploy/runtime/cri"
)

// fakeRuntime serves CRI Status on a unix socket and remembers the
// deadline each call came with (gRPC carries it to the server).
type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	mu        sync.Mutex
	deadlines []time.Time // zero: the call had none
}

func (f *fakeRuntime) Status(ctx context.Context, _ *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	dl, _ := ctx.Deadline()
	f.mu.Lock()
	f.deadlines = append(f.deadlines, dl)
	f.mu.Unlock()
	return &runtimeapi.StatusResponse{RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: "kata-qemu"}}}, nil
}

// serve runs f on the host's containerd CRI socket.
func serve(t *testing.T, host string, f *fakeRuntime) {
	t.Helper()
	sock := filepath.Join(host, runtime.VariantContainerd.CRISocket())
	assert.NilError(t, os.MkdirAll(filepath.Dir(sock), 0o755))
	l, err := net.Listen("unix", sock)
	assert.NilError(t, err)
	s := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(s, f)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
}

// Handlers bounds a call without a deadline by DefaultTimeout, as Verify
// does (issue 19 item 8): a runtime that never answers must not hang the
// caller. A deadline the caller set is kept.
func TestHandlersHonoursDefaultTimeout(t *testing.T) {
	host := t.TempDir()
	f := &fakeRuntime{}
	serve(t, host, f)

	start := time.Now()
	hs, err := cri.Handlers(context.Background(), host, runtime.VariantContainerd)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(hs, []string{"kata-qemu"}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = cri.Handlers(ctx, host, runtime.VariantContainerd)
	assert.NilError(t, err)

	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Assert(t, is.Len(f.deadlines, 2))
	assert.Check(t, !f.deadlines[0].IsZero(), "no deadline without the caller's")
	got := f.deadlines[0].Sub(start)
	assert.Check(t, got > cri.DefaultTimeout-10*time.Second && got <= cri.DefaultTimeout+time.Second, "deadline in %s", got)
	got = f.deadlines[1].Sub(start)
	assert.Check(t, got > 50*time.Second && got <= time.Minute+time.Second, "deadline in %s, want the caller's", got)
}

// Inputs that would have Verify and Handlers ask some other socket, or
// one that cannot be dialled, are refused at once with an error saying
// why, not after the timeout (issue 19 item 8).
func TestVerifyAndHandlersRefuseBadInputs(t *testing.T) {
	hs, err := runtime.Handlers([]string{"qemu"})
	assert.NilError(t, err)
	spec := runtime.Spec{Handlers: hs}
	// A host root deep enough that its CRI socket path passes 107 bytes.
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	assert.NilError(t, os.MkdirAll(long, 0o755))
	for _, tc := range []struct {
		name    string
		root    string
		variant runtime.Variant
		want    string
	}{
		{name: "empty host root", root: "", variant: runtime.VariantContainerd, want: "CRI: host root is empty"},
		{name: "relative host root", root: "host", variant: runtime.VariantContainerd, want: `CRI: host root "host" is a relative path`},
		{name: "empty variant", root: t.TempDir(), variant: "", want: "CRI: no container runtime variant given"},
		{name: "unknown variant", root: t.TempDir(), variant: "dockerd", want: `CRI: unknown container runtime "dockerd"`},
		{name: "socket path too long", root: long, variant: runtime.VariantContainerd,
			want: "longer than the 107 a unix socket address holds (sun_path): mount the host root at a shorter path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			err := cri.Verify(ctx, tc.root, tc.variant, spec)
			assert.Check(t, is.ErrorContains(err, tc.want))
			_, err = cri.Handlers(ctx, tc.root, tc.variant)
			assert.Check(t, is.ErrorContains(err, tc.want))
			assert.Check(t, time.Since(start) < 2*time.Second, "refused after %s", time.Since(start))
		})
	}
}
