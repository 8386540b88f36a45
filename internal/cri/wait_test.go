package cri

import (
	"context"
	"errors"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// lister answers with each of its answers in turn, then the last forever.
type lister struct{ answers []func() ([]string, error) }

func (l *lister) Handlers(context.Context) ([]string, error) {
	a := l.answers[0]
	if len(l.answers) > 1 {
		l.answers = l.answers[1:]
	}
	return a()
}

func serves(hs ...string) func() ([]string, error) {
	return func() ([]string, error) { return hs, nil }
}

func TestWaitServing(t *testing.T) {
	refused := func() ([]string, error) { return nil, errors.New("connection refused") }
	for _, tc := range []struct {
		name    string
		answers []func() ([]string, error)
		wantErr string
		missing []string
	}{
		{name: "serves at once", answers: []func() ([]string, error){serves("kata", "kata-qemu", "runc")}},
		{name: "answers after its restart", answers: []func() ([]string, error){refused, serves("runc"), serves("kata", "kata-qemu")}},
		{name: "never serves one", answers: []func() ([]string, error){refused, serves("kata", "runc")}, wantErr: "does not serve handlers kata-qemu", missing: []string{"kata-qemu"}},
		{name: "never answers", answers: []func() ([]string, error){refused}, wantErr: "the runtime does not answer on /run/x.sock: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			err := WaitServing(ctx, &lister{answers: tc.answers}, "/run/x.sock", []string{"kata", "kata-qemu"}, time.Millisecond)
			if tc.wantErr == "" {
				assert.NilError(t, err)
				return
			}
			assert.Check(t, is.ErrorContains(err, tc.wantErr))
			ns, ok := errors.AsType[*runtime.NotServingError](err)
			assert.Check(t, is.Equal(ok, tc.missing != nil))
			if ok {
				assert.Check(t, is.DeepEqual(ns.Missing, tc.missing))
			}
		})
	}
}
