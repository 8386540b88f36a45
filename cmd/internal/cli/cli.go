// Package cli holds what the three commands share: flags that environment
// variables can also set (a DaemonSet sets env, a person types flags), exit
// codes, a health endpoint and the API client.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kata-deploy/kata-deploy/nodelabel"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// EnvName is the environment variable that sets a flag: KATA_ and the flag
// name in upper case with '-' as '_' (--host-root: KATA_HOST_ROOT).
func EnvName(flag string) string {
	return "KATA_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// NewFlagSet returns a flag set for a command that reports errors instead
// of exiting, so that a usage error can exit 2. Parse writes its help.
func NewFlagSet(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	// pflag would write errors and help to one writer; Parse puts help on
	// stdout (for --help | less) and ExitCode puts errors on stderr.
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	return fs
}

// Environ is what a command reads of its process beyond its arguments.
type Environ struct {
	// Vars are the environment variables, as os.Environ returns them.
	Vars []string
	// Stdout gets --help; Stderr gets warnings.
	Stdout, Stderr io.Writer
}

// imageVars returns the KATA_ variables the image sets for every command
// (the Dockerfile's ENV): a command without their flag ignores them without
// a warning, as they are no typo.
func imageVars() []string { return []string{"KATA_PAYLOAD", "KATA_HOST_ROOT"} }

// Parse parses args, then sets every flag not on the command line from its
// environment variable when that is set (even to ""), and names the
// variables in --help. --help is written to env.Stdout and returns
// pflag.ErrHelp (exit 0). A KATA_ variable that names no flag is most
// likely a typo: it gets a warning naming the closest flag.
func Parse(fs *pflag.FlagSet, args []string, env Environ) error {
	fs.VisitAll(func(f *pflag.Flag) {
		f.Usage += " (env " + EnvName(f.Name) + ")"
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintf(env.Stdout, "Usage of %s:\n%s", fs.Name(), fs.FlagUsages())
			return err
		}
		return Usage("%s (see --help)", err)
	}
	vars := map[string]string{}
	for _, kv := range env.Vars {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "KATA_") {
			vars[k] = v
		}
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		v, ok := vars[EnvName(f.Name)]
		delete(vars, EnvName(f.Name))
		if f.Changed || !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
		}
	})
	for _, k := range imageVars() {
		delete(vars, k)
	}
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		fmt.Fprintf(env.Stderr, "warning: %s names no flag of %s and is ignored%s\n", k, fs.Name(), closest(fs, k))
	}
	if len(errs) > 0 {
		return Usage("%s", errors.Join(errs...))
	}
	return nil
}

// closest suggests the flags whose variable is nearest to the unknown
// variable k. A typo (edit distance at most 3, or a one-letter shorthand
// such as KATA_O) names the nearest flag. Failing that, a variable whose
// words (split at "_") begin, end or lie inside a flag's words, or hold a
// flag's words, is a name half remembered (KATA_NODE, KATA_HTTPS_PROXY,
// upstream's KATA_INSTALLATION_PREFIX): the flags that share the most
// words with it are named, at most three. Anything else gets no guess: a
// wrong suggestion misleads more than none.
func closest(fs *pflag.FlagSet, k string) string {
	best, dist := "", 4
	fs.VisitAll(func(f *pflag.Flag) {
		d := editDistance(k, EnvName(f.Name))
		if f.Shorthand != "" && k == EnvName(f.Shorthand) {
			d = 0
		}
		if d < dist {
			best, dist = f.Name, d
		}
	})
	if best != "" {
		return fmt.Sprintf("; did you mean %s (--%s)?", EnvName(best), best)
	}
	words := strings.Split(strings.TrimPrefix(k, "KATA_"), "_")
	var names []string
	most := 0
	fs.VisitAll(func(f *pflag.Flag) {
		n := sharedRun(words, strings.Split(strings.TrimPrefix(EnvName(f.Name), "KATA_"), "_"))
		switch {
		case n == 0 || n < most:
		case n > most:
			names, most = []string{f.Name}, n
		default:
			names = append(names, f.Name)
		}
	})
	if len(names) == 0 || len(names) > 3 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; did you mean ")
	for i, n := range names {
		if i > 0 {
			b.WriteString(" or ")
		}
		fmt.Fprintf(&b, "%s (--%s)", EnvName(n), n)
	}
	b.WriteString("?")
	return b.String()
}

// sharedRun is how many words the shorter of a and b has when it is a
// prefix, a suffix or a contiguous run of the longer, else 0.
func sharedRun(a, b []string) int {
	if len(a) > len(b) {
		a, b = b, a
	}
	for i := 0; i+len(a) <= len(b); i++ {
		if slices.Equal(a, b[i:i+len(a)]) {
			return len(a)
		}
	}
	return 0
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// HostRoot checks a --host-root value and returns it absolute: empty
// would make the current directory the host root, which is refused; a
// relative path a person typed (./node) is taken from the working
// directory here, once, as the library takes absolute host roots only.
func HostRoot(p string) (string, error) {
	if p == "" {
		return "", Usage("--host-root (%s) is empty; set the directory the node's root file system is mounted at, e.g. /host", EnvName("host-root"))
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", Usage("--host-root %q: %v", p, err)
	}
	return abs, nil
}

// UsageError is a mistake in how a command was called; it exits 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usage returns a *UsageError.
func Usage(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// ExitCode writes err to stderr and returns the process exit code: 0 for
// success or --help, 2 for a usage error, 1 for anything else.
func ExitCode(err error, stderr io.Writer) int {
	var ue *UsageError
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "usage error:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
}

// Logger logs text lines to w.
func Logger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// RestConfig returns the API server's client config: from kubeconfig if
// set, else the in-cluster service account.
func RestConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("API server config: %w", err)
	}
	cfg.UserAgent = "kata-deploy"
	return cfg, nil
}

// Health serves /healthz (alive) and /readyz (after SetReady) until ctx
// ends.
type Health struct {
	ready atomic.Bool
}

// SetReady marks the process ready.
func (h *Health) SetReady() { h.ready.Store(true) }

// Serve listens on addr ("" serves nothing) until ctx ends.
func (h *Health) Serve(ctx context.Context, addr string, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !h.ready.Load() {
			http.Error(w, "not ready\n", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health endpoint: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Info("serving health endpoints", "addr", ln.Addr().String())
	go srv.Serve(ln)
	return nil
}

// NodeClient returns the client of one node, as the three commands use it.
func NodeClient(kubeconfig, node, domain string, log *slog.Logger, opts ...nodelabel.Option) (*nodelabel.Client, error) {
	if node == "" {
		return nil, Usage("--node-name is required (or %s)", EnvName("node-name"))
	}
	rc, err := RestConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	api, err := nodelabel.NewAPI(rc)
	if err != nil {
		return nil, err
	}
	return nodelabel.New(api, node, append([]nodelabel.Option{nodelabel.WithDomain(domain), nodelabel.WithLogger(log)}, opts...)...)
}
