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
	"net"
	"net/http"
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
// of exiting, so that a usage error can exit 2.
func NewFlagSet(name string, out io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(out)
	fs.SortFlags = false
	return fs
}

// Parse parses args, then sets every flag not on the command line from its
// environment variable when that is set (even to ""), and names the
// variables in --help. lookupEnv is os.LookupEnv outside tests.
func Parse(fs *pflag.FlagSet, args []string, lookupEnv func(string) (string, bool)) error {
	fs.VisitAll(func(f *pflag.Flag) {
		f.Usage += " (env " + EnvName(f.Name) + ")"
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return Usage("%s", err)
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		if v, ok := lookupEnv(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	if len(errs) > 0 {
		return Usage("%s", errors.Join(errs...))
	}
	return nil
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

// NodeClient returns the API and a labelling client for one node, as the
// three commands use them.
func NodeClient(kubeconfig, node, domain string, log *slog.Logger) (nodelabel.API, *nodelabel.Client, error) {
	if node == "" {
		return nil, nil, Usage("--node-name is required (or %s)", EnvName("node-name"))
	}
	rc, err := RestConfig(kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	api, err := nodelabel.NewAPI(rc)
	if err != nil {
		return nil, nil, err
	}
	c, err := nodelabel.New(api, node, nodelabel.WithDomain(domain), nodelabel.WithLogger(log))
	if err != nil {
		return nil, nil, err
	}
	return api, c, nil
}
