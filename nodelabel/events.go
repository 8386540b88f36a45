package nodelabel

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// EventNamespace is where Node events live: Nodes have no namespace, and
// the kubelet records its Node events in "default" too.
const EventNamespace = metav1.NamespaceDefault

// Reason is the machine-readable reason of an event on the Node.
type Reason string

// The events kata-deploy records on a Node. Reasons ending in "Failed" are
// Warning events, the others Normal.
const (
	ReasonInstallStarted     Reason = "KataInstallStarted"
	ReasonInstallSucceeded   Reason = "KataInstallSucceeded"
	ReasonInstallFailed      Reason = "KataInstallFailed"
	ReasonUninstallStarted   Reason = "KataUninstallStarted"
	ReasonUninstallSucceeded Reason = "KataUninstallSucceeded"
	ReasonUninstallFailed    Reason = "KataUninstallFailed"
	// ReasonWaitingRestart says Kata is written but waits for the
	// runtime's next restart before the node is labelled for it.
	ReasonWaitingRestart Reason = "KataWaitingForRestart"
	// ReasonKeptInstalled says an installer stopped without uninstalling,
	// and why: its DaemonSet still targets the node (a rolling update, a
	// pod deleted or evicted), or it could not tell.
	ReasonKeptInstalled Reason = "KataKeptInstalled"
	// ReasonRemovalConfirmed says an installer that stopped is
	// uninstalling, and why: its DaemonSet is gone or being deleted, or
	// no longer targets the node after the grace period.
	ReasonRemovalConfirmed Reason = "KataRemovalConfirmed"
	ReasonCleanupStarted   Reason = "KataCleanupStarted"
	ReasonCleanupSucceeded Reason = "KataCleanupSucceeded"
	ReasonCleanupFailed    Reason = "KataCleanupFailed"
)

// eventType is Warning for failures and Normal otherwise.
func (r Reason) eventType() string {
	if strings.HasSuffix(string(r), "Failed") {
		return corev1.EventTypeWarning
	}
	return corev1.EventTypeNormal
}

// maxMessage is the API server's limit on an event message (1 KiB).
const maxMessage = 1024

// RecordEvent records an event with reason and message on the Node, shown
// by kubectl describe node. Failure reasons are Warning events.
//
// The events are core/v1 Events in namespace "default" whose involvedObject
// is the Node, because that is what kubectl describe node lists (it queries
// core/v1 events by involvedObject). There is one Event object per node,
// component and reason, holding the latest occurrence: an installer that
// crash-loops overwrites its last InstallFailed instead of piling up
// events. That takes a create, and a patch when the event exists.
func (c *Client) RecordEvent(ctx context.Context, reason Reason, message string) error {
	if err := c.usable(); err != nil {
		return err
	}
	if len(message) > maxMessage {
		// Cut on a rune boundary so the message stays valid UTF-8.
		message = strings.ToValidUTF8(message[:maxMessage-3], "") + "..."
	}
	node, err := c.api.GetNode(ctx, c.node)
	if err != nil {
		return fmt.Errorf("node %s: record event %s: read node: %w", c.node, reason, err)
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      c.eventName(reason),
			Namespace: EventNamespace,
		},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "v1",
			Kind:       "Node",
			Name:       node.Name,
			UID:        node.UID,
		},
		Reason:              string(reason),
		Message:             message,
		Type:                reason.eventType(),
		Source:              corev1.EventSource{Component: c.component, Host: c.node},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: c.component,
		ReportingInstance:   c.component + "-" + c.node,
	}
	_, err = c.api.CreateEvent(ctx, ev)
	if apierrors.IsAlreadyExists(err) {
		// The same reason seen before: make the event the latest
		// occurrence. Count stays 1 since the old one is not read.
		var body []byte
		body, err = json.Marshal(map[string]any{
			"message":        ev.Message,
			"type":           ev.Type,
			"involvedObject": ev.InvolvedObject,
			"firstTimestamp": now,
			"lastTimestamp":  now,
		})
		if err == nil {
			_, err = c.api.PatchEvent(ctx, EventNamespace, ev.Name, types.MergePatchType, body)
		}
	}
	if err != nil {
		return fmt.Errorf("node %s: record event %s: %w", c.node, reason, err)
	}
	c.log.Info("recorded node event", "reason", reason, "type", ev.Type, "message", message)
	return nil
}

// eventName is the Event's name for reason: fixed per node, component and
// reason, so that repeats update one object.
func (c *Client) eventName(r Reason) string {
	name := c.node + "." + c.component + "." + strings.ToLower(string(r))
	if len(name) > 253 {
		name = name[len(name)-253:]
		name = strings.TrimLeft(name, ".-")
	}
	return name
}
