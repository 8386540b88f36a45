// Command benchlabeler is the runtime labeler reduced to its core, for
// measuring an idle labeler's memory (docs/nodelabel-performance.md): it
// connects with nodelabel.NewAPI and runs nodelabel.RunRuntimeLabeler for
// one node until SIGTERM.
//
//	benchlabeler -server URL -token-file F -ca-file F -node NAME
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/client-go/rest"

	"github.com/kata-deploy/kata-deploy/nodelabel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "benchlabeler:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchlabeler", flag.ContinueOnError)
	server := fs.String("server", "", "API server URL")
	tokenFile := fs.String("token-file", "", "bearer token file")
	caFile := fs.String("ca-file", "", "CA bundle file")
	node := fs.String("node", "", "node name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	token, err := os.ReadFile(*tokenFile)
	if err != nil {
		return err
	}
	cfg := &rest.Config{
		Host:            *server,
		BearerToken:     strings.TrimSpace(string(token)),
		TLSClientConfig: rest.TLSClientConfig{CAFile: *caFile},
		UserAgent:       "kata-deploy-benchlabeler",
	}
	// nodelabel's own small REST client, not a client-go clientset,
	// whose scheme would register every API group at start-up.
	api, err := nodelabel.NewAPI(cfg)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := nodelabel.New(api, *node, nodelabel.WithLogger(log))
	if err != nil {
		return err
	}
	return c.RunRuntimeLabeler(ctx)
}
