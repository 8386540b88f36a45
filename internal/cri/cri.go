// Package cri asks a container runtime, over its CRI socket, what it is and
// which runtime handlers it serves: the runtime's own live view, which is
// what an installer must verify after a restart (CRI-O, for one, starts
// happily while ignoring a handler whose shim is missing).
package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Client talks to one runtime's CRI socket.
type Client struct {
	socket string
	conn   *grpc.ClientConn
	rs     runtimeapi.RuntimeServiceClient
}

// MaxSocketPath is the longest path a unix socket address holds: the 108
// bytes of sun_path less its terminating NUL.
const MaxSocketPath = 107

// Dial prepares a client for the CRI socket at socket (a path on this
// machine). No connection is made until a call, so a path too long for a
// socket address is refused here: the calls would otherwise retry it until
// their deadline and end with no word of why.
func Dial(socket string) (*Client, error) {
	if len(socket) > MaxSocketPath {
		return nil, fmt.Errorf("CRI socket %s: path of %d bytes, longer than the %d a unix socket address holds (sun_path): mount the host root at a shorter path", socket, len(socket), MaxSocketPath)
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("CRI socket %s: %w", socket, err)
	}
	return &Client{socket: socket, conn: conn, rs: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

// DialUnder prepares a client for the CRI socket at the host path socket,
// resolved under root as the host resolves it (see Dial).
func DialUnder(root *hostfs.Root, socket string) (*Client, error) {
	p, err := SocketUnder(root, socket)
	if err != nil {
		return nil, err
	}
	return Dial(p)
}

// SocketUnder returns where the host path socket is on this machine,
// resolved under root as the host resolves it (a /run that links to
// /var/run stays inside the root).
func SocketUnder(root *hostfs.Root, socket string) (string, error) {
	resolved, err := root.Resolve(socket)
	if err != nil {
		return "", fmt.Errorf("CRI socket %s: %w", socket, err)
	}
	return root.HostPath(resolved), nil
}

// Close releases the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Version returns the runtime as the kubelet reports it, such as
// "containerd://1.6.20" or "cri-o://1.34.0".
func (c *Client) Version(ctx context.Context) (string, error) {
	v, err := c.rs.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return "", fmt.Errorf("CRI Version on %s: %w", c.socket, err)
	}
	name := v.GetRuntimeName()
	if name == "cri-o" || name == "crio" {
		name = "cri-o"
	}
	return name + "://" + v.GetRuntimeVersion(), nil
}

// Handlers returns the runtime handlers the runtime serves, sorted, without
// the unnamed default. They come from CRI Status runtime_handlers; runtimes
// that do not send that field (containerd 1.6) are asked for their
// effective CRI config instead.
func (c *Client) Handlers(ctx context.Context) ([]string, error) {
	resp, err := c.rs.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		return nil, fmt.Errorf("CRI Status on %s: %w", c.socket, err)
	}
	var names []string
	for _, h := range resp.GetRuntimeHandlers() {
		if h.GetName() != "" {
			names = append(names, h.GetName())
		}
	}
	if len(names) == 0 {
		if names, err = handlersFromConfig(resp.GetInfo()["config"]); err != nil {
			return nil, fmt.Errorf("CRI Status on %s: %w", c.socket, err)
		}
	}
	slices.Sort(names)
	return names, nil
}

// MissingFrom returns the handlers of want that have lacks.
func MissingFrom(have, want []string) []string {
	var missing []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			missing = append(missing, w)
		}
	}
	return missing
}

// handlersFromConfig reads the runtime names from containerd's CRI config
// as its verbose Status prints it.
func handlersFromConfig(config string) ([]string, error) {
	if config == "" {
		return nil, nil
	}
	var cfg struct {
		Containerd struct {
			Runtimes map[string]json.RawMessage `json:"runtimes"`
		} `json:"containerd"`
	}
	if err := json.Unmarshal([]byte(config), &cfg); err != nil {
		return nil, fmt.Errorf("parse CRI config: %w", err)
	}
	names := make([]string, 0, len(cfg.Containerd.Runtimes))
	for name := range cfg.Containerd.Runtimes {
		names = append(names, name)
	}
	return names, nil
}
