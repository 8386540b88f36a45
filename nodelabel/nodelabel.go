package nodelabel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultDomain is the prefix of kata-deploy's label keys.
const DefaultDomain = "kata-containers.io"

// Label names, below the domain.
const (
	// RuntimeLabelName is the label holding the node's container runtime.
	RuntimeLabelName = "container-runtime"
	// KataLabelName is the label holding the state of Kata on the node.
	KataLabelName = "kata-runtime"
)

// DefaultComponent names kata-deploy as the source of its events and the
// field manager of its label writes.
const DefaultComponent = "kata-deploy"

// KataState is a value of the kata-runtime label.
type KataState string

// The states of Kata on a node.
const (
	// KataInstalled marks a node where Kata was installed and verified.
	KataInstalled KataState = "true"
	// KataCleanup marks a node whose installer has uninstalled Kata and
	// that the cleanup DaemonSet still has to reset.
	KataCleanup KataState = "cleanup"
	// KataWaitingRestart marks a node where Kata is written but the
	// runtime has not been restarted to load it (the installer ran with
	// restart disabled), so nobody has verified that it serves the
	// handlers: RuntimeClasses, which select "true", keep Kata pods away
	// until a later installer run finds the handlers served.
	KataWaitingRestart KataState = "waiting-restart"
)

// Client drives the labels and events of one Node. It is safe for
// concurrent use; it holds no state between calls beyond its settings.
type Client struct {
	api       API
	node      string
	domain    string
	component string
	settle    time.Duration
	log       *slog.Logger
}

// Option configures a Client.
type Option func(*Client)

// WithDomain sets the label domain (default kata-containers.io), for
// clusters running more than one kata-deploy.
func WithDomain(domain string) Option { return func(c *Client) { c.domain = domain } }

// WithComponent sets the name recorded as the source of events and as the
// field manager of label writes (default kata-deploy).
func WithComponent(name string) Option { return func(c *Client) { c.component = name } }

// WithSettle sets how long the Node must keep reporting a runtime that
// differs from the runtime label before RunRuntimeLabeler changes the label
// (default DefaultSettle). Zero follows at once; transients (a Node not
// Ready, a runtime that reports no version) are never followed.
func WithSettle(d time.Duration) Option { return func(c *Client) { c.settle = d } }

// WithLogger logs to l; the default discards. The watches' own logging
// (client-go's reflector) goes to l as well.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.log = l
		}
	}
}

// New returns a Client for the Node named node, calling the API server
// through api (NewAPI, or clientset.API for a client-go clientset).
func New(api API, node string, opts ...Option) (*Client, error) {
	c := &Client{api: api, node: node, domain: DefaultDomain, component: DefaultComponent, settle: DefaultSettle, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(c)
	}
	if api == nil {
		return nil, errors.New("nodelabel: nil API")
	}
	if errs := validation.IsDNS1123Subdomain(node); len(errs) > 0 {
		return nil, fmt.Errorf("nodelabel: node name %q: %v", node, errs)
	}
	if errs := validation.IsQualifiedName(c.domain + "/" + KataLabelName); len(errs) > 0 {
		return nil, fmt.Errorf("nodelabel: label domain %q: %v", c.domain, errs)
	}
	if c.settle < 0 {
		return nil, fmt.Errorf("nodelabel: settle time %s: want zero or more", c.settle)
	}
	if errs := validation.IsDNS1123Subdomain(c.component); len(errs) > 0 {
		return nil, fmt.Errorf("nodelabel: component %q: %v", c.component, errs)
	}
	c.log = c.log.With("node", node)
	return c, nil
}

// errUnusable is what every call on a Client that New did not make says.
var errUnusable = errors.New("nodelabel: Client not made by nodelabel.New: use New(api, node)")

// usable refuses a zero or nil Client, which has no API server to call.
func (c *Client) usable() error {
	if c == nil || c.api == nil {
		return errUnusable
	}
	return nil
}

// Node returns the name of the Node the client works on.
func (c *Client) Node() string { return c.node }

// ReportedRuntime returns the container runtime the Node reports
// (status.nodeInfo.containerRuntimeVersion), such as "containerd://2.2.9":
// what runtime.ParseRuntime reads. It is empty until the kubelet reports.
func (c *Client) ReportedRuntime(ctx context.Context) (string, error) {
	if err := c.usable(); err != nil {
		return "", err
	}
	n, err := c.api.GetNode(ctx, c.node)
	if err != nil {
		return "", fmt.Errorf("read Node %s: %w", c.node, err)
	}
	return n.Status.NodeInfo.ContainerRuntimeVersion, nil
}

// RuntimeLabel returns the runtime label's key, e.g.
// kata-containers.io/container-runtime.
func (c *Client) RuntimeLabel() string { return c.domain + "/" + RuntimeLabelName }

// KataLabel returns the Kata state label's key, e.g.
// kata-containers.io/kata-runtime.
func (c *Client) KataLabel() string { return c.domain + "/" + KataLabelName }
