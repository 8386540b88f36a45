package cli

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestFlagsFromEnvironment(t *testing.T) {
	vars := []string{"KATA_HOST_ROOT=/node", "KATA_SHIMS=qemu,clh", "KATA_RESTART=false", "KATA_RUNTIME=crio", "KATA_HEALTH_ADDR="}
	var out bytes.Buffer
	fs := NewFlagSet("x")
	hostRoot := fs.String("host-root", "/host", "")
	shims := fs.StringSlice("shims", nil, "")
	restart := fs.Bool("restart", true, "")
	rt := fs.String("runtime", "auto", "")
	health := fs.String("health-addr", ":8091", "")
	// The command line wins over the environment.
	assert.NilError(t, Parse(fs, []string{"--runtime", "containerd"}, Environ{Vars: vars, Stdout: &out, Stderr: &out}))
	assert.Check(t, is.Equal(out.String(), ""), "no warnings for known variables")
	assert.Check(t, is.Equal(*hostRoot, "/node"))
	assert.Check(t, is.DeepEqual(*shims, []string{"qemu", "clh"}))
	assert.Check(t, is.Equal(*restart, false))
	assert.Check(t, is.Equal(*rt, "containerd"))
	assert.Check(t, is.Equal(*health, ""), "a variable set to empty is a value")
	assert.Check(t, is.Contains(fs.Lookup("host-root").Usage, "(env KATA_HOST_ROOT)"))
}

func TestExitCodes(t *testing.T) {
	var stderr bytes.Buffer
	fs := NewFlagSet("x")
	fs.Bool("restart", true, "")
	err := Parse(fs, []string{"--bogus"}, Environ{Stdout: &stderr, Stderr: &stderr})
	assert.Check(t, is.Equal(ExitCode(err, &stderr), 2))

	fs = NewFlagSet("x")
	fs.Bool("restart", true, "")
	err = Parse(fs, nil, Environ{Vars: []string{"KATA_RESTART=maybe"}, Stdout: &stderr, Stderr: &stderr})
	assert.Check(t, is.Equal(ExitCode(err, &stderr), 2))
	assert.Check(t, is.Contains(stderr.String(), "KATA_RESTART"))

	assert.Check(t, is.Equal(ExitCode(pflag.ErrHelp, &stderr), 0))
	assert.Check(t, is.Equal(ExitCode(nil, &stderr), 0))
	assert.Check(t, is.Equal(ExitCode(errors.New("boom"), &stderr), 1))
}

func TestHelpGoesToStdout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	fs := NewFlagSet("x")
	fs.String("host-root", "/host", "where the host is")
	err := Parse(fs, []string{"--help"}, Environ{Stdout: &stdout, Stderr: &stderr})
	assert.Check(t, is.Equal(ExitCode(err, &stderr), 0))
	assert.Check(t, is.Contains(stdout.String(), "--host-root"))
	assert.Check(t, is.Contains(stdout.String(), "(env KATA_HOST_ROOT)"))
	assert.Check(t, is.Equal(stderr.String(), ""))
}

func TestUnknownVariablesWarnWithTheClosestFlag(t *testing.T) {
	var stderr bytes.Buffer
	fs := NewFlagSet("x")
	fs.StringP("output", "o", "text", "")
	fs.String("host-root", "/host", "")
	vars := []string{"KATA_O=json", "KATA_HOST_ROOTS=/x", "KATA_PAYLOAD=/p", "KATA_ZZZZZZZZZZZ=1", "PATH=/bin", "KATA_OUTPUT=json"}
	assert.NilError(t, Parse(fs, nil, Environ{Vars: vars, Stdout: &stderr, Stderr: &stderr}))
	out := stderr.String()
	assert.Check(t, is.Contains(out, "KATA_O names no flag of x and is ignored; did you mean KATA_OUTPUT (--output)?"))
	assert.Check(t, is.Contains(out, "KATA_HOST_ROOTS names no flag of x and is ignored; did you mean KATA_HOST_ROOT (--host-root)?"))
	assert.Check(t, is.Contains(out, "KATA_ZZZZZZZZZZZ names no flag of x and is ignored\n"))
	assert.Check(t, !strings.Contains(out, "KATA_PAYLOAD"), "a variable set for another command is no typo")
	assert.Check(t, !strings.Contains(out, "PATH"))
}

// Beyond typos, a name half remembered (a word missing or added at either
// end, upstream's longer names) still gets a suggestion: every flag that
// shares the most whole words with it, up to three; a shared word alone in
// many flags gets none.
func TestUnknownVariablesSuggestByWords(t *testing.T) {
	fs := NewFlagSet("x")
	for _, f := range []string{"node-name", "prefix", "suffix", "agent-https-proxy", "agent-no-proxy", "hypervisor-annotations", "runtime", "runtime-config", "runtime-version", "verify-timeout", "debug"} {
		fs.String(f, "", "")
	}
	for _, tc := range []struct{ v, want string }{
		{"KATA_NODE", "KATA_NODE_NAME (--node-name)"},                                                     // a word short
		{"KATA_NODE_NAME_OVERRIDE", "KATA_NODE_NAME (--node-name)"},                                       // a word long
		{"KATA_INSTALLATION_PREFIX", "KATA_PREFIX (--prefix)"},                                            // upstream's name
		{"KATA_MULTI_INSTALL_SUFFIX", "KATA_SUFFIX (--suffix)"},                                           // upstream's name
		{"KATA_ALLOWED_HYPERVISOR_ANNOTATIONS", "KATA_HYPERVISOR_ANNOTATIONS (--hypervisor-annotations)"}, // upstream's name
		{"KATA_HTTPS_PROXY", "KATA_AGENT_HTTPS_PROXY (--agent-https-proxy)"},                              // two words shared beat one
		{"KATA_PROXY", "KATA_AGENT_HTTPS_PROXY (--agent-https-proxy) or KATA_AGENT_NO_PROXY (--agent-no-proxy)"},
		{"KATA_TIMEOUT", "KATA_VERIFY_TIMEOUT (--verify-timeout)"},
		{"KATA_DEBG", "KATA_DEBUG (--debug)"}, // a typo still wins
	} {
		var stderr bytes.Buffer
		assert.NilError(t, Parse(fs, nil, Environ{Vars: []string{tc.v + "=1"}, Stdout: &stderr, Stderr: &stderr}))
		assert.Check(t, is.Equal(stderr.String(), "warning: "+tc.v+" names no flag of x and is ignored; did you mean "+tc.want+"?\n"), tc.v)
	}
	// Words no flag has get no guess; a name around exactly one flag's
	// words gets that flag, not its longer relatives (runtime-config).
	for _, tc := range []struct{ v, want string }{
		{"KATA_CONFIG_FILE_PATH", "\n"},
		{"KATA_RUNTIME_CLASS_NAME", "; did you mean KATA_RUNTIME (--runtime)?\n"},
	} {
		var stderr bytes.Buffer
		assert.NilError(t, Parse(fs, nil, Environ{Vars: []string{tc.v + "=1"}, Stdout: &stderr, Stderr: &stderr}))
		assert.Check(t, is.Equal(stderr.String(), "warning: "+tc.v+" names no flag of x and is ignored"+tc.want), tc.v)
	}
}

func TestEmptyHostRootIsAUsageError(t *testing.T) {
	var stderr bytes.Buffer
	_, err := HostRoot("")
	assert.Check(t, is.Equal(ExitCode(err, &stderr), 2))
	assert.Check(t, is.Contains(stderr.String(), "KATA_HOST_ROOT"))
	got, err := HostRoot("/host")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got, "/host"))
}

// A relative --host-root, as a person types it, is the directory it names
// from where they are: the library gets it absolute.
func TestRelativeHostRootMadeAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	wd, err := os.Getwd()
	assert.NilError(t, err)
	got, err := HostRoot("./node")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got, filepath.Join(wd, "node")))
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

// The variables the commands take as set for all of them are the ones the
// image sets: the Dockerfile's ENV.
func TestImageVarsAreTheDockerfiles(t *testing.T) {
	data, err := os.ReadFile("../../../Dockerfile")
	assert.NilError(t, err)
	var set []string
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "ENV "); ok {
			for _, kv := range strings.Fields(rest) {
				if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "KATA_") {
					set = append(set, k)
				}
			}
		}
	}
	slices.Sort(set)
	want := imageVars()
	slices.Sort(want)
	assert.Check(t, is.DeepEqual(set, want))
}

// kata-cleanup's cluster-side subcommands have no --host-root, yet run in
// the image, which sets KATA_HOST_ROOT for every command: no warning.
func TestImageVarsWithoutTheirFlagAreNoTypo(t *testing.T) {
	var stderr bytes.Buffer
	fs := NewFlagSet("kata-cleanup remove-installers")
	fs.String("namespace", "kube-system", "")
	vars := []string{"KATA_PAYLOAD=/opt/kata-artifacts", "KATA_HOST_ROOT=/host"}
	assert.NilError(t, Parse(fs, nil, Environ{Vars: vars, Stdout: &stderr, Stderr: &stderr}))
	assert.Check(t, is.Equal(stderr.String(), ""))
}
