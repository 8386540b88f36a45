package cli

import (
	"bytes"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestFlagsFromEnvironment(t *testing.T) {
	env := map[string]string{"KATA_HOST_ROOT": "/node", "KATA_SHIMS": "qemu,clh", "KATA_RESTART": "false", "KATA_RUNTIME": "crio", "KATA_HEALTH_ADDR": ""}
	var out bytes.Buffer
	fs := NewFlagSet("x", &out)
	hostRoot := fs.String("host-root", "/host", "")
	shims := fs.StringSlice("shims", nil, "")
	restart := fs.Bool("restart", true, "")
	rt := fs.String("runtime", "auto", "")
	health := fs.String("health-addr", ":8091", "")
	// The command line wins over the environment.
	assert.NilError(t, Parse(fs, []string{"--runtime", "containerd"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }))
	assert.Check(t, is.Equal(*hostRoot, "/node"))
	assert.Check(t, is.DeepEqual(*shims, []string{"qemu", "clh"}))
	assert.Check(t, is.Equal(*restart, false))
	assert.Check(t, is.Equal(*rt, "containerd"))
	assert.Check(t, is.Equal(*health, ""), "a variable set to empty is a value")
	assert.Check(t, is.Contains(fs.Lookup("host-root").Usage, "(env KATA_HOST_ROOT)"))
}

func TestExitCodes(t *testing.T) {
	var stderr bytes.Buffer
	fs := NewFlagSet("x", &stderr)
	fs.Bool("restart", true, "")
	err := Parse(fs, []string{"--bogus"}, func(string) (string, bool) { return "", false })
	assert.Check(t, is.Equal(ExitCode(err, &stderr), 2))

	fs = NewFlagSet("x", &stderr)
	fs.Bool("restart", true, "")
	err = Parse(fs, nil, func(k string) (string, bool) { v, ok := map[string]string{"KATA_RESTART": "maybe"}[k]; return v, ok })
	assert.Check(t, is.Equal(ExitCode(err, &stderr), 2))
	assert.Check(t, is.Contains(stderr.String(), "KATA_RESTART"))

	assert.Check(t, is.Equal(ExitCode(pflag.ErrHelp, &stderr), 0))
	assert.Check(t, is.Equal(ExitCode(nil, &stderr), 0))
	assert.Check(t, is.Equal(ExitCode(errors.New("boom"), &stderr), 1))
}

func TestHealth(t *testing.T) {
	var h Health
	ctx := t.Context()
	assert.NilError(t, h.Serve(ctx, "127.0.0.1:18093", Logger(&bytes.Buffer{})))
	get := func(p string) int {
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get("http://127.0.0.1:18093" + p)
		assert.NilError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Check(t, is.Equal(get("/healthz"), 200))
	assert.Check(t, is.Equal(get("/readyz"), 503))
	h.SetReady()
	assert.Check(t, is.Equal(get("/readyz"), 200))
}
