package main

import (
	"bytes"
	"context"
	"path/filepath"
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

// Mistakes in how the command is called exit 2 with a message naming the
// flag or subcommand, before any API server or host is touched.
func TestUsageErrorsExit2(t *testing.T) {
	for _, c := range []struct {
		args []string
		vars []string
		msg  string
	}{
		{args: []string{"--host-root", ""}, msg: "--host-root (KATA_HOST_ROOT) is empty"},
		{vars: []string{"KATA_HOST_ROOT="}, msg: "--host-root (KATA_HOST_ROOT) is empty"},
		{args: []string{"--runtime", "foo", "--node-name", "n1"}, msg: "--runtime:"},
		{args: []string{"--host-root", "/host"}, msg: "--node-name is required (or KATA_NODE_NAME)"},
		{args: []string{"--bogus"}, msg: "unknown flag: --bogus"},
		{vars: []string{"KATA_RESTART=maybe", "KATA_NODE_NAME=n1"}, msg: `KATA_RESTART="maybe"`},
		{args: []string{"frobnicate"}, msg: `unknown subcommand "frobnicate"`},
		{args: []string{"remove-installers", "extra"}, msg: `unexpected arguments ["extra"]`},
		{args: []string{"await-cleanup", "--bogus"}, msg: "unknown flag: --bogus"},
	} {
		code, _, stderr := invoke(t, c.vars, c.args...)
		assert.Check(t, is.Equal(code, 2), "%v %v: %s", c.args, c.vars, stderr)
		assert.Check(t, is.Contains(stderr, "usage error: "+c.msg), "%v %v", c.args, c.vars)
	}
}

func TestHelpOnStdout(t *testing.T) {
	for args, want := range map[string]string{"--help": "--systemd-socket", "remove-installers": "--daemonsets", "await-cleanup": "--label-domain"} {
		argv := []string{args}
		if args != "--help" {
			argv = append(argv, "-h")
		}
		code, stdout, stderr := invoke(t, nil, argv...)
		assert.Check(t, is.Equal(code, 0))
		assert.Check(t, is.Contains(stdout, want))
		assert.Check(t, is.Contains(stdout, "(env KATA_"))
		assert.Check(t, is.Equal(stderr, ""))
	}
}

// The node name comes from the environment as the DaemonSet sets it; the
// run then fails at the API server config, which the test cannot give.
// KATA_PAYLOAD, set by the image for the installer, draws no warning; a
// misspelt variable does.
func TestEnvironment(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "kubeconfig")
	code, _, stderr := invoke(t, []string{"KATA_NODE_NAME=n1", "KATA_KUBECONFIG=" + missing, "KATA_PAYLOAD=/opt/kata-artifacts", "KATA_NODE_NAMES=n1"})
	assert.Check(t, is.Equal(code, 1), stderr)
	assert.Check(t, is.Contains(stderr, "error: API server config:"))
	assert.Check(t, is.Contains(stderr, missing))
	assert.Check(t, !bytes.Contains([]byte(stderr), []byte("KATA_PAYLOAD")), stderr)
	assert.Check(t, is.Contains(stderr, "warning: KATA_NODE_NAMES names no flag of kata-cleanup and is ignored; did you mean KATA_NODE_NAME (--node-name)?"))

	// A flag wins over its variable.
	code, _, stderr = invoke(t, []string{"KATA_RUNTIME=foo"}, "--runtime", "containerd", "--node-name", "n1", "--kubeconfig", missing)
	assert.Check(t, is.Equal(code, 1), stderr)
	assert.Check(t, is.Contains(stderr, "API server config:"))

	code, _, stderr = invoke(t, nil, "remove-installers", "--kubeconfig", missing)
	assert.Check(t, is.Equal(code, 1), stderr)
	assert.Check(t, is.Contains(stderr, "error: API server config:"))
}
