// Command sdrestart restarts a systemd unit over /run/systemd/private with go-systemd,
// as kata-deploy does from its pod. The testbed's own tests run it inside a node with
// Node.RunAsPod to prove that path works.
//
//	sdrestart UNIT
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sdrestart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: sdrestart UNIT")
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	conn, err := sddbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return fmt.Errorf("connect to systemd: %w", err)
	}
	defer conn.Close()
	ch := make(chan string, 1)
	if _, err := conn.RestartUnitContext(ctx, args[0], "replace", ch); err != nil {
		return fmt.Errorf("restart %s: %w", args[0], err)
	}
	select {
	case res := <-ch:
		fmt.Println(res)
		if res != "done" {
			return fmt.Errorf("restart %s: job %s", args[0], res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("restart %s: %w", args[0], ctx.Err())
	}
}
