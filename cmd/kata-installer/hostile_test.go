package main

// Hostile and mistaken invocations (docs/hostile-hosts.md): usage errors
// exit 2 with a message naming the flag, --help goes to stdout, and the
// read-only commands write nothing to the host.

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/cmd/internal/cli"
	"github.com/kata-deploy/kata-deploy/internal/testing/hosttest"
)

// payload writes a small kata-static tree with the configs of the shims
// given.
func payload(t *testing.T, shims ...string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"opt/kata/bin/containerd-shim-kata-v2": "shim"}
	for _, s := range shims {
		files["opt/kata/share/defaults/kata-containers/configuration-"+s+".toml"] = "[hypervisor." + s + "]\npath = \"/opt/kata/bin/x\"\nkernel_params = \"\"\n[agent.kata]\n[runtime]\n"
	}
	for p, data := range files {
		full := filepath.Join(dir, p)
		assert.NilError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		assert.NilError(t, os.WriteFile(full, []byte(data), 0o755))
	}
	return dir
}

func host(t *testing.T) string {
	return hosttest.Write(t, nil, map[string][]byte{"/etc/containerd/config.toml": []byte("version = 2\n")})
}

func invoke(t *testing.T, vars []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, cli.Environ{Vars: vars, Stdout: &out, Stderr: &errb})
	code = cli.ExitCode(err, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit2(t *testing.T) {
	h := host(t)
	base := []string{"--once", "--label=false", "--restart=false", "--host-root", h, "--runtime", "containerd", "--runtime-version", "1.7.0", "--payload", payload(t, "qemu")}
	for _, c := range []struct {
		args []string
		vars []string
		msg  string
	}{
		{args: []string{"--shims", "nope"}, msg: `--shims: unknown Kata shim "nope"`},
		{args: []string{"--shims", "qemu", "--default-shim", "clh"}, msg: `--default-shim: default Kata shim "clh" is not among`},
		{args: []string{"--suffix", "Bad_Suffix"}, msg: `--suffix: install suffix "Bad_Suffix"`},
		// A shim named like the default handler is the --shims flag's fault.
		{args: []string{"--shims", "default"}, msg: `--shims: unknown Kata shim "default"`},
		{args: []string{"--shims", "qemu-coco-dev-runtime-rs", "--suffix", strings.Repeat("a", 40)}, msg: "--suffix: handler name"},
		{args: []string{"--prefix", "usr/local"}, msg: `--prefix "usr/local": want an absolute host path`},
		{args: []string{"--runtime", "foo"}, msg: "--runtime:"},
		{args: []string{"--runtime-version", "notaversion"}, msg: "--runtime-version:"},
		{args: []string{"--mode", "weird"}, msg: "--mode:"},
		{args: []string{"status", "-o", "yaml"}, msg: `--output "yaml": want text or json`},
		{args: []string{"frobnicate"}, msg: `unknown subcommand "frobnicate"`},
		{args: []string{"--bogus"}, msg: "unknown flag: --bogus"},
		{vars: []string{"KATA_HOST_ROOT="}, msg: "--host-root (KATA_HOST_ROOT) is empty"},
	} {
		args := c.args
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			args = append([]string{args[0]}, append(base, args[1:]...)...)
		} else {
			args = append(append([]string{}, base...), args...)
		}
		if c.vars != nil {
			args = removeFlag(args, "--host-root")
		}
		code, _, stderr := invoke(t, c.vars, args...)
		assert.Check(t, is.Equal(code, 2), "%v: %s", c.args, stderr)
		assert.Check(t, is.Contains(stderr, c.msg), "%v", c.args)
		assert.Check(t, is.Contains(stderr, "usage error:"))
	}
}

func removeFlag(args []string, flag string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == flag {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func TestHelpOnStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"plan", "--help"}, {"status", "-h"}} {
		code, stdout, stderr := invoke(t, nil, args...)
		assert.Check(t, is.Equal(code, 0))
		assert.Check(t, is.Contains(stdout, "--systemd-socket"))
		assert.Check(t, is.Equal(stderr, ""))
	}
}

func TestPayloadWithoutShimConfigNamesIt(t *testing.T) {
	h := host(t)
	code, _, stderr := invoke(t, nil, "--once", "--label=false", "--restart=false", "--host-root", h, "--runtime", "containerd",
		"--runtime-version", "1.7.0", "--payload", payload(t, "qemu"), "--shims", "qemu,clh")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(stderr, "has no Kata config for shim clh"), stderr)
	assert.Check(t, is.Contains(stderr, "pick --shims from those it has: qemu"), stderr)
}

// plan and status write nothing to the host: no lock, no directory, on a
// fresh host and on an installed one.
func TestPlanAndStatusWriteNothing(t *testing.T) {
	h := host(t)
	pl := payload(t, "qemu", "clh")
	args := []string{"--label=false", "--restart=false", "--host-root", h, "--runtime", "containerd", "--runtime-version", "1.7.0", "--payload", pl, "--shims", "qemu,clh"}
	check := func(state string) {
		before := hosttest.Snapshot(t, h)
		for _, sub := range []string{"plan", "status"} {
			code, _, stderr := invoke(t, nil, append([]string{sub}, args...)...)
			assert.Check(t, is.Equal(code, 0), "%s on a %s host: %s", sub, state, stderr)
			assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, h), before), "%s wrote to a %s host", sub, state)
		}
	}
	check("fresh")
	code, _, stderr := invoke(t, nil, append([]string{"install", "--once"}, args...)...)
	assert.Assert(t, is.Equal(code, 0), stderr)
	check("installed")
}

// With --label (the default) the node name is required, from the flag or
// KATA_NODE_NAME; the run then needs the API server config.
func TestLabelNeedsNodeName(t *testing.T) {
	h := host(t)
	base := []string{"--once", "--restart=false", "--host-root", h, "--runtime", "containerd", "--runtime-version", "1.7.0", "--payload", payload(t, "qemu")}
	code, _, stderr := invoke(t, nil, base...)
	assert.Check(t, is.Equal(code, 2), stderr)
	assert.Check(t, is.Contains(stderr, "usage error: --node-name is required (or KATA_NODE_NAME)"))

	missing := filepath.Join(t.TempDir(), "kubeconfig")
	before := hosttest.Snapshot(t, h)
	code, _, stderr = invoke(t, []string{"KATA_NODE_NAME=n1", "KATA_KUBECONFIG=" + missing}, base...)
	assert.Check(t, is.Equal(code, 1), stderr)
	assert.Check(t, is.Contains(stderr, "error: API server config:"))
	assert.Check(t, is.DeepEqual(hosttest.Snapshot(t, h), before), "a run that never reached the API server wrote to the host")
}

// Every flag can come from its KATA_ variable, as the DaemonSet sets them;
// a flag on the command line wins; a bad value names the variable.
func TestFlagsFromEnvironment(t *testing.T) {
	h := host(t)
	vars := []string{"KATA_HOST_ROOT=" + h, "KATA_RUNTIME=containerd", "KATA_RUNTIME_VERSION=1.7.0", "KATA_PAYLOAD=" + payload(t, "qemu", "clh"),
		"KATA_SHIMS=clh", "KATA_LABEL=false", "KATA_RESTART=false", "KATA_OUTPUT=json"}
	code, stdout, stderr := invoke(t, vars, "plan")
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.Contains(stdout, "handlers kata, kata-clh\n"))

	code, stdout, stderr = invoke(t, vars, "plan", "--shims", "qemu")
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.Contains(stdout, "handlers kata, kata-qemu\n"), "the flag wins over KATA_SHIMS")

	code, stdout, stderr = invoke(t, vars, "status")
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.Contains(stdout, `"installed": false`), "KATA_OUTPUT=json")

	for _, bad := range []struct{ v, msg string }{
		{"KATA_RESTART=maybe", `KATA_RESTART="maybe"`},
		{"KATA_VERIFY_TIMEOUT=soon", `KATA_VERIFY_TIMEOUT="soon"`},
		{"KATA_SHIMS=nope", `--shims: unknown Kata shim "nope"`},
	} {
		code, _, stderr := invoke(t, append(slices.Clone(vars), bad.v), "plan")
		assert.Check(t, is.Equal(code, 2), "%s: %s", bad.v, stderr)
		assert.Check(t, is.Contains(stderr, bad.msg), bad.v)
	}
}

// An uninstall without --prefix follows the node's record silently: the
// flag's default is no value the user gave against the record.
func TestUninstallFollowsTheRecordWithoutWarning(t *testing.T) {
	h := host(t)
	base := []string{"--label=false", "--restart=false", "--host-root", h, "--runtime", "containerd", "--runtime-version", "1.7.0"}
	code, _, stderr := invoke(t, nil, append([]string{"install", "--once", "--payload", payload(t, "qemu"), "--shims", "qemu", "--prefix", "/usr/local/lib/x"}, base...)...)
	assert.Assert(t, is.Equal(code, 0), stderr)
	code, _, stderr = invoke(t, nil, append([]string{"uninstall"}, base...)...)
	assert.Assert(t, is.Equal(code, 0), stderr)
	assert.Check(t, !strings.Contains(stderr, "not on the flag"), stderr)
	_, err := os.Stat(filepath.Join(h, "usr/local/lib/x/kata"))
	assert.Check(t, os.IsNotExist(err), "the recorded install is still there: %v", err)
}
