package tomltext

import (
	"context"
	"errors"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/kata-deploy/kata-deploy/runtime"
)

func TestConfigError(t *testing.T) {
	_, err := Decode(context.Background(), []byte("a = 1\nb = \n"))
	assert.Assert(t, err != nil)
	var ce *runtime.ConfigError
	assert.Assert(t, errors.As(ConfigError("/etc/x.toml", err), &ce))
	assert.Equal(t, ce.Path, "/etc/x.toml")
	assert.Equal(t, ce.Line, 2)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = ConfigError("/etc/x.toml", ctx.Err())
	assert.Assert(t, !errors.As(err, &ce), "a cancelled read is not the file's fault")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorContains(t, err, "read /etc/x.toml")
}

// TestConfigErrorLineOfRedefinedTable: a table header defined twice (a
// handler written twice by hand) is refused at the second header's line,
// not line 1: the parser gives headers no span of their own.
func TestConfigErrorLineOfRedefinedTable(t *testing.T) {
	doc := "[crio.runtime]\n\n[crio.runtime.runtimes.kata-qemu]\nruntime_path = \"/a\"\n\n[crio.runtime.runtimes.kata-qemu]\nruntime_path = \"/b\"\n"
	_, err := Decode(context.Background(), []byte(doc))
	assert.Assert(t, err != nil)
	assert.Error(t, ConfigError("/etc/crio/crio.conf", err), "/etc/crio/crio.conf:6: key crio.runtime.runtimes.kata-qemu: is already defined as a table")
}
