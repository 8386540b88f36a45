// Command probe runs one systemd package call and prints its outcome as
// JSON. The package's node tests copy it into a testbed node and run it
// there as a pod would run, because systemd's private socket only answers
// peers in the node's PID namespace or a child of it.
//
//	probe [-host-root DIR] [-timeout D] status|exists|restart UNIT
//	probe restart-if-needed UNIT CONFIG-FILE
//	probe daemon-reload
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kata-deploy/kata-deploy/systemd"
	"github.com/kata-deploy/kata-deploy/systemd/internal/probe/result"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	hostRoot := fs.String("host-root", "/", "host root")
	timeout := fs.Duration("timeout", 30*time.Second, "deadline of the call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) == 0 {
		return errors.New("no command")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := systemd.Dial(ctx, *hostRoot)
	if err != nil {
		return err
	}
	defer c.Close()

	var res result.Result
	start := time.Now()
	switch {
	case args[0] == "status" && len(args) == 2:
		st, err := c.Status(ctx, args[1])
		res.Status, res.Error = &st, result.Describe(err)
	case args[0] == "exists" && len(args) == 2:
		ok, err := c.Exists(ctx, args[1])
		res.Exists, res.Error = &ok, result.Describe(err)
	case args[0] == "restart" && len(args) == 2:
		st, err := c.Restart(ctx, args[1])
		res.Status, res.Error = &st, result.Describe(err)
	case args[0] == "restart-if-needed" && len(args) == 3:
		fi, err := os.Stat(args[2])
		if err != nil {
			return err
		}
		st, d, err := c.RestartIfNeeded(ctx, args[1], fi.ModTime())
		res.Status, res.Decision, res.Error = &st, &d, result.Describe(err)
	case args[0] == "daemon-reload" && len(args) == 1:
		res.Error = result.Describe(c.DaemonReload(ctx))
	default:
		return fmt.Errorf("unknown command %q", args)
	}
	res.Elapsed = time.Since(start)
	return json.NewEncoder(stdout).Encode(res)
}
