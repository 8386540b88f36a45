package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cri opens a CRI runtime client on the node's socket; close the returned connection.
func (n *Node) cri() (runtimeapi.RuntimeServiceClient, *grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+n.CRISocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: CRI client: %w", n.name, err)
	}
	return runtimeapi.NewRuntimeServiceClient(conn), conn, nil
}

// criVersion is the runtime version as the kubelet reports it: "name://version".
func (n *Node) criVersion(ctx context.Context) (string, error) {
	c, conn, err := n.cri()
	if err != nil {
		return "", err
	}
	defer conn.Close()
	v, err := c.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return "", fmt.Errorf("node %s: CRI Version: %w", n.name, err)
	}
	return v.RuntimeName + "://" + v.RuntimeVersion, nil
}

// CRIStatusResponse is the runtime's full CRI Status answer (verbose).
func (n *Node) CRIStatusResponse(ctx context.Context) (*runtimeapi.StatusResponse, error) {
	c, conn, err := n.cri()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := c.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		return nil, fmt.Errorf("node %s: CRI Status: %w", n.name, err)
	}
	return resp, nil
}

// CRIStatus is the info map of a verbose CRI Status: JSON values, among them the
// runtime's effective configuration ("config").
func (n *Node) CRIStatus(ctx context.Context) (map[string]string, error) {
	resp, err := n.CRIStatusResponse(ctx)
	if err != nil {
		return nil, err
	}
	return resp.GetInfo(), nil
}

// RuntimeHandlers lists the runtime's handler names, sorted, without the unnamed default
// handler. They come from CRI Status runtime_handlers; containerd 1.6 does not send
// that field, so for it they come from the runtimes of its effective CRI config. (The
// kubelet fills node.status.runtimeHandlers from runtime_handlers only; see Register.)
func (n *Node) RuntimeHandlers(ctx context.Context) ([]string, error) {
	resp, err := n.CRIStatusResponse(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, h := range resp.GetRuntimeHandlers() {
		if h.GetName() != "" {
			names = append(names, h.GetName())
		}
	}
	if len(names) == 0 {
		names, err = handlersFromConfig(resp.GetInfo()["config"])
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.name, err)
		}
	}
	sort.Strings(names)
	return names, nil
}

// handlersFromConfig reads the runtime names of containerd's CRI config as its verbose
// Status prints it.
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
