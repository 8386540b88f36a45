package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/cmd/internal/cli"
)

func invoke(t *testing.T, vars []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := cli.Environ{Vars: vars, Stdout: &out, Stderr: &errb}
	code = cli.ExitCode(run(context.Background(), args, env), &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, c := range []struct {
		args []string
		vars []string
		msg  string
	}{
		{msg: "--node-name is required (or KATA_NODE_NAME)"},
		{vars: []string{"KATA_NODE_NAME="}, msg: "--node-name is required (or KATA_NODE_NAME)"},
		{args: []string{"--bogus"}, msg: "unknown flag: --bogus"},
		{args: []string{"--host-root", "/host"}, msg: "unknown flag: --host-root"},
	} {
		code, _, stderr := invoke(t, c.vars, c.args...)
		assert.Check(t, is.Equal(code, 2), "%v %v: %s", c.args, c.vars, stderr)
		assert.Check(t, is.Contains(stderr, "usage error: "+c.msg), "%v %v", c.args, c.vars)
	}
}

func TestHelpOnStdout(t *testing.T) {
	code, stdout, stderr := invoke(t, nil, "--help")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(stdout, "--node-name"))
	assert.Check(t, is.Contains(stdout, "(env KATA_NODE_NAME)"))
	assert.Check(t, is.Equal(stderr, ""))
}

// The node name comes from the environment as the DaemonSet sets it; the
// run then fails at the API server config, which the test cannot give.
// The variables the image sets for the installer draw no warning.
func TestEnvironment(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "kubeconfig")
	code, _, stderr := invoke(t, []string{"KATA_NODE_NAME=n1", "KATA_KUBECONFIG=" + missing,
		"KATA_PAYLOAD=/opt/kata-artifacts", "KATA_HOST_ROOT=/host", "KATA_LABEL_DOMAN=example.com"})
	assert.Check(t, is.Equal(code, 1), stderr)
	assert.Check(t, is.Contains(stderr, "error: API server config:"))
	assert.Check(t, !strings.Contains(stderr, "KATA_PAYLOAD"), stderr)
	assert.Check(t, !strings.Contains(stderr, "KATA_HOST_ROOT"), stderr)
	assert.Check(t, is.Contains(stderr, "warning: KATA_LABEL_DOMAN names no flag of kata-labeler and is ignored; did you mean KATA_LABEL_DOMAIN (--label-domain)?"))
}
