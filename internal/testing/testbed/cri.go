package testbed

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kata-deploy/kata-deploy/internal/cri"
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
	c, err := cri.Dial(n.CRISocket())
	if err != nil {
		return "", fmt.Errorf("node %s: %w", n.name, err)
	}
	defer c.Close()
	v, err := c.Version(ctx)
	if err != nil {
		return "", fmt.Errorf("node %s: %w", n.name, err)
	}
	return v, nil
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
// handler, as kata-deploy's own verification sees them (internal/cri: CRI Status
// runtime_handlers, or for containerd 1.6, which does not send that field, the runtimes
// of its effective CRI config). The kubelet fills node.status.runtimeHandlers from
// runtime_handlers only; see Register.
func (n *Node) RuntimeHandlers(ctx context.Context) ([]string, error) {
	c, err := cri.Dial(n.CRISocket())
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.name, err)
	}
	defer c.Close()
	names, err := c.Handlers(ctx)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.name, err)
	}
	return names, nil
}
