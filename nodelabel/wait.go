package nodelabel

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// NotReadyError says that the Node did not become ready for Kata before the
// context ended, and what was last seen.
type NotReadyError struct {
	// Node is the Node's name.
	Node string
	// Ready is the last Ready condition seen ("True", "False", "Unknown",
	// or "" when there was none or no Node).
	Ready string
	// Reason and Message are the Ready condition's.
	Reason, Message string
	// MissingHandlers are the wanted handlers status.runtimeHandlers did
	// not list.
	MissingHandlers []string
	// Err is the context's error.
	Err error
}

// Error says what the Node lacked when the wait ended.
func (e *NotReadyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: not ready for Kata: ", e.Node)
	switch e.Ready {
	case "":
		b.WriteString("no Ready condition seen")
	case string(corev1.ConditionTrue):
		b.WriteString("Ready")
	default:
		fmt.Fprintf(&b, "Ready=%s", e.Ready)
		if e.Reason != "" {
			fmt.Fprintf(&b, " (%s: %s)", e.Reason, e.Message)
		}
	}
	if len(e.MissingHandlers) > 0 {
		fmt.Fprintf(&b, ", runtime handlers not reported: %s", strings.Join(e.MissingHandlers, ", "))
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

// Unwrap returns the context's error.
func (e *NotReadyError) Unwrap() error { return e.Err }

// WaitReady waits until the Node is Ready and, when the kubelet reports
// status.runtimeHandlers (Kubernetes 1.30 and later with a runtime that
// tells), until that list names every handler in handlers. A kubelet that
// reports no handlers at all is taken not to support the field. It watches
// the Node rather than polling; when ctx ends first the error is a
// *NotReadyError saying what was missing.
func (c *Client) WaitReady(ctx context.Context, handlers ...string) error {
	if err := c.usable(); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	w := c.watchNode(wctx)
	defer func() {
		cancel()
		<-w.done
	}()
	last := &NotReadyError{Node: c.node}
	for {
		select {
		case <-ctx.Done():
			last.Err = ctx.Err()
			return last
		case <-w.kick:
		}
		n := w.latest(c.node)
		if n == nil {
			continue
		}
		last = readiness(n, handlers)
		if last.Ready == string(corev1.ConditionTrue) && len(last.MissingHandlers) == 0 {
			c.log.Info("node ready for Kata", "handlers", handlers)
			return nil
		}
		c.log.Debug("node not ready yet", "ready", last.Ready, "missingHandlers", last.MissingHandlers)
	}
}

// readiness compares a Node with what WaitReady waits for.
func readiness(n *corev1.Node, handlers []string) *NotReadyError {
	e := &NotReadyError{Node: n.Name}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			e.Ready, e.Reason, e.Message = string(cond.Status), cond.Reason, cond.Message
		}
	}
	if len(n.Status.RuntimeHandlers) == 0 {
		return e
	}
	var have []string
	for _, h := range n.Status.RuntimeHandlers {
		have = append(have, h.Name)
	}
	for _, h := range handlers {
		if !slices.Contains(have, h) {
			e.MissingHandlers = append(e.MissingHandlers, h)
		}
	}
	return e
}
