package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Cluster is a whole Kubernetes cluster on this machine: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler on the host, and nodes that are
// systemd-nspawn machines running containerd or CRI-O, a kubelet and kube-proxy as
// systemd units, each in a network namespace of its own.
//
// Addresses: every cluster takes a /24 of 10.213.0.0/16 that no host route or address
// uses. The API server and an image registry listen on its .254, on an interface the
// cluster creates (so the host's own interfaces and loopback are never exposed);
// node i is .(4i+2) on its end of a veth pair whose host end is .(4i+1), its default
// route. Pods get 10.244.i.0/24 on a bridge inside their node and reach the API server
// through the kubernetes Service (kube-proxy's rules live in the node's namespace).
// Nothing is routed or forwarded by the host: every packet the host sees is for one
// of its own cluster addresses.
//
// Images come from the registry (go-containerregistry's, in the test process): each
// node's runtime has it as the mirror of docker.io, quay.io and registry.k8s.io, so a
// manifest's image reference works unchanged once PushImage has put the image there.
type Cluster struct {
	*ControlPlane
	env      *env
	subnet   int
	link     string
	registry string // host:port
	nodes    []*Node
	logDir   string
}

// clusterNetPrefix is the range clusters take their /24 from.
const clusterNetPrefix = "10.213."

// StartCluster starts a cluster with one node per flavour, waits until every Node is
// Ready, and stops and removes all of it in t.Cleanup. It skips (or fails under
// CI=true) when the testbed is not provisioned.
func StartCluster(t testing.TB, flavours ...Flavour) *Cluster {
	t.Helper()
	return StartClusterWith(t, flavours)
}

// StartClusterWith is StartCluster with options, such as the faults in
// faults.go.
func StartClusterWith(t testing.TB, flavours []Flavour, opts ...ClusterOption) *Cluster {
	t.Helper()
	var o clusterOptions
	for _, opt := range opts {
		opt(&o)
	}
	e := requireEnv(t)
	if len(flavours) == 0 {
		flavours = Flavours()
	}
	start := time.Now()
	c := &Cluster{env: e, logDir: newLogDir(t, "cluster")}
	sweepStaleLinks(t)
	if err := c.startNetwork(); err != nil {
		t.Fatalf("testbed: cluster network: %v", err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "link", "del", c.link).CombinedOutput(); err != nil {
			t.Errorf("testbed: remove %s: %v: %s", c.link, err, out)
		}
	})

	names := make([]string, len(flavours))
	tokens := make([]string, len(flavours))
	var tokenLines []string
	for i, f := range flavours {
		names[i] = "kd-" + shortFlavour(f) + "-" + randHex(2)
		tokens[i] = randHex(16)
		tokenLines = append(tokenLines, fmt.Sprintf("%s,system:node:%s,node-%s,system:nodes", tokens[i], names[i], names[i]))
	}
	proxyToken := randHex(16)
	tokenLines = append(tokenLines, proxyToken+",system:kube-proxy,kube-proxy,")

	ctx, cancel := context.WithTimeout(context.Background(), controlPlaneStartTimeout)
	defer cancel()
	cp, stopCP, err := startControlPlane(ctx, e, t.TempDir(), c.logDir, cpOptions{
		bindAddr: c.apiAddr(), port: 6443, tokens: tokenLines, cluster: true,
	})
	if err != nil {
		t.Fatalf("testbed: cluster control plane (logs in %s): %v", c.logDir, err)
	}
	c.ControlPlane = cp
	t.Cleanup(func() { stopControlPlane(t, stopCP) })
	if err := c.startControllers(t); err != nil {
		t.Fatalf("testbed: cluster controllers (logs in %s): %v", c.logDir, err)
	}
	if err := c.startRegistry(t); err != nil {
		t.Fatalf("testbed: image registry: %v", err)
	}
	if err := c.pushSandboxImages(ctx); err != nil {
		t.Fatalf("testbed: sandbox images: %v", err)
	}

	// One after another: a node boots in 1 to 2.5 s, and StartNode fails the
	// test on the test's own goroutine. The kubelets register meanwhile.
	for i, f := range flavours {
		var extra []NodeOption
		for _, per := range o.perNode {
			extra = append(extra, per(f)...)
		}
		c.nodes = append(c.nodes, c.startNode(t, i+1, f, names[i], tokens[i], proxyToken, extra...))
	}
	if err := c.waitNodesReady(t, 3*time.Minute); err != nil {
		t.Fatalf("testbed: %v (logs in %s and the nodes' log directories)", err, c.logDir)
	}
	t.Logf("testbed: cluster of %d nodes ready in %s (API server %s)", len(c.nodes), time.Since(start).Round(10*time.Millisecond), c.Host())
	return c
}

func shortFlavour(f Flavour) string {
	return strings.NewReplacer("containerd-", "ctrd", "crio-", "crio", ".", "").Replace(string(f))
}

// apiAddr is the API server's and the registry's address.
func (c *Cluster) apiAddr() string { return fmt.Sprintf("%s%d.254", clusterNetPrefix, c.subnet) }

// nodeAddrs are node i's address and its host end's (i from 1).
func (c *Cluster) nodeAddrs(i int) (node, gateway string) {
	return fmt.Sprintf("%s%d.%d", clusterNetPrefix, c.subnet, 4*i+2), fmt.Sprintf("%s%d.%d", clusterNetPrefix, c.subnet, 4*i+1)
}

// startNetwork picks a free /24 and puts the API address on an interface named after
// it (one end of a veth pair), whose alias records the owning process (sweepStaleLinks).
func (c *Cluster) startNetwork() error {
	out, err := exec.Command("ip", "-o", "addr").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip addr: %w: %s", err, out)
	}
	routes, err := exec.Command("ip", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip route: %w: %s", err, routes)
	}
	used := string(out) + string(routes)
	for _, s := range rand.Perm(200) {
		s += 20
		if strings.Contains(used, fmt.Sprintf("%s%d.", clusterNetPrefix, s)) || strings.Contains(used, clusterNetPrefix+"0.0/16") {
			continue
		}
		c.subnet = s
		c.link = fmt.Sprintf("kdtb%d", s)
		for _, args := range [][]string{
			// A veth pair, not a dummy interface: kernels built without
			// dummy (this machine's) all have veth, which nspawn needs.
			{"link", "add", c.link, "type", "veth", "peer", "name", c.link + "p"},
			{"link", "set", c.link, "alias", fmt.Sprintf("kata-deploy-testbed owner=%d", os.Getpid())},
			{"addr", "add", c.apiAddr() + "/32", "dev", c.link},
			{"link", "set", c.link, "up"},
			{"link", "set", c.link + "p", "up"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				_ = exec.Command("ip", "link", "del", c.link).Run()
				return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
			}
		}
		return nil
	}
	return errors.New("no free /24 in " + clusterNetPrefix + "0.0/16")
}

// sweepStaleLinks removes the interfaces of test binaries that died without
// cleaning up.
func sweepStaleLinks(t testing.TB) {
	out, err := exec.Command("ip", "-o", "link", "show", "type", "veth").CombinedOutput()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[1], "kdtb") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		_, owner, ok := strings.Cut(line, "kata-deploy-testbed owner=")
		if !ok {
			continue
		}
		pid, _ := strconv.Atoi(strings.Fields(owner)[0])
		if pid > 0 && syscall.Kill(pid, 0) == nil {
			continue
		}
		if err := exec.Command("ip", "link", "del", name).Run(); err == nil {
			t.Logf("testbed: removed stale cluster interface %s", name)
		}
	}
}

// startControllers starts kube-controller-manager (DaemonSets, service accounts and
// their tokens, the kube-root-ca.crt ConfigMaps, garbage collection) and kube-scheduler.
func (c *Cluster) startControllers(t testing.TB) error {
	dir := c.dir
	common := []string{"--kubeconfig", c.kubeconfig, "--leader-elect=false", "--secure-port=0", "--v=1"}
	cm, err := startDaemon("kube-controller-manager", exec.Command(c.env.kubeControllerManager, append(common,
		"--service-account-private-key-file", filepath.Join(dir, "sa.key"),
		"--root-ca-file", filepath.Join(dir, "ca.crt"),
		"--use-service-account-credentials=true",
		"--controllers=*",
		"--allocate-node-cidrs=false",
	)...), filepath.Join(c.logDir, "kube-controller-manager.log"), syscall.SIGKILL)
	if err != nil {
		return err
	}
	t.Cleanup(func() { _ = cm.stop(syscall.SIGTERM, 10*time.Second) })
	sched, err := startDaemon("kube-scheduler", exec.Command(c.env.kubeScheduler, common...),
		filepath.Join(c.logDir, "kube-scheduler.log"), syscall.SIGKILL)
	if err != nil {
		return err
	}
	t.Cleanup(func() { _ = sched.stop(syscall.SIGTERM, 10*time.Second) })
	return nil
}

// registryPort is the image registry's port on the API address.
const registryPort = 5000

// startRegistry serves an in-memory OCI registry on the cluster's address.
func (c *Cluster) startRegistry(t testing.TB) error {
	addr := net.JoinHostPort(c.apiAddr(), strconv.Itoa(registryPort))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(discardLogger())), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	c.registry = addr
	return nil
}

// mirrored are the registries whose images the cluster's registry stands in for.
var mirrored = []string{"docker.io", "quay.io", "registry.k8s.io"}

// Registry is the host:port of the cluster's image registry.
func (c *Cluster) Registry() string { return c.registry }

// Nodes are the cluster's nodes, in the order of StartCluster's flavours.
func (c *Cluster) Nodes() []*Node { return slices.Clone(c.nodes) }

// Kubectl is the path of the kubectl built with the cluster's Kubernetes version.
func (c *Cluster) Kubectl() string { return c.env.kubectl }

// startNode boots node i (from 1) with its kubelet.
func (c *Cluster) startNode(t testing.TB, i int, f Flavour, name, token, proxyToken string, extra ...NodeOption) *Node {
	t.Helper()
	_, gw := c.nodeAddrs(i)
	hostIf := fmt.Sprintf("%sn%d", c.link, i)
	files, err := c.nodeFiles(i, f, name, token, proxyToken)
	if err != nil {
		t.Fatalf("testbed: node %s: %v", name, err)
	}
	opts := append(append(files, extra...),
		WithName(name),
		func(o *nodeOptions) {
			o.layers = []string{c.env.kubeLayer}
			o.init = []string{"/usr/local/sbin/testbed-init"}
			o.nspawnArgs = []string{
				"--network-veth-extra=" + hostIf + ":eth0",
				// runc needs every capability and the keyring calls nspawn filters.
				"--capability=all", "--system-call-filter=@keyring",
				"--setenv=container=systemd-nspawn",
			}
			o.afterStart = func(*Node) error {
				for _, args := range [][]string{
					{"addr", "replace", gw + "/30", "dev", hostIf},
					{"link", "set", hostIf, "up"},
				} {
					if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
						return fmt.Errorf("host end of the node's veth: ip %s: %w: %s", strings.Join(args, " "), err, out)
					}
				}
				return nil
			}
		})
	return StartNode(t, f, opts...)
}

// nodeFiles are node i's own files: its addresses, kubelet and kube-proxy settings and
// credentials, CNI network, and the runtime's config with the registry mirror.
func (c *Cluster) nodeFiles(i int, f Flavour, name, token, proxyToken string) ([]NodeOption, error) {
	addr, gw := c.nodeAddrs(i)
	kubelet, err := c.KubeconfigFor("system:node:"+name, token)
	if err != nil {
		return nil, err
	}
	proxy, err := c.KubeconfigFor("system:kube-proxy", proxyToken)
	if err != nil {
		return nil, err
	}
	endpoint := "unix://" + f.CRISocketPath()
	opts := []NodeOption{
		WithFile("/etc/testbed/node.env", fmt.Appendf(nil, "NODE_NAME=%s\nNODE_IP=%s\nNODE_PREFIX=30\nNODE_GATEWAY=%s\n", name, addr, gw), 0o644),
		WithFile("/etc/hosts", fmt.Appendf(nil, "127.0.0.1\tlocalhost\n%s\t%s\n", addr, name), 0o644),
		WithFile("/etc/kubernetes/kubelet.kubeconfig", kubelet, 0o600),
		WithFile("/etc/kubernetes/kube-proxy.kubeconfig", proxy, 0o600),
		WithFile("/etc/kubernetes/kubelet.yaml", []byte(kubeletConfig(endpoint)), 0o644),
		WithFile("/etc/kubernetes/kube-proxy.yaml", []byte(kubeProxyConfig), 0o644),
		WithFile("/etc/cni/net.d/10-testbed.conflist", fmt.Appendf(nil, cniConfig, i), 0o644),
	}
	// What the kubelet wants these kernel settings to be (see testbed-node-setup).
	for k, v := range map[string]string{
		"vm.overcommit_memory": "1", "vm.panic_on_oom": "0", "kernel.panic": "10", "kernel.panic_on_oops": "1",
		"kernel.keys.root_maxkeys": "1000000", "kernel.keys.root_maxbytes": "25000000",
	} {
		opts = append(opts, WithFile("/etc/testbed/sysctl/"+k, []byte(v+"\n"), 0o444))
	}
	switch f {
	case Containerd16:
		opts = append(opts, WithFile("/etc/containerd/config.toml", []byte(containerd16Config), 0o644))
	case Containerd2:
		opts = append(opts, WithFile("/etc/containerd/config.toml", []byte(containerd2Config), 0o644))
	case CRIO:
		opts = append(opts,
			WithFile("/etc/crio/crio.conf.d/20-testbed.conf", []byte(crioConfig), 0o644),
			WithFile("/etc/containers/registries.conf.d/50-testbed.conf", []byte(c.crioMirrors()), 0o644))
		clamp, err := buildTool("oomclamp")
		if err != nil {
			return nil, err
		}
		opts = append(opts, WithFile("/usr/local/bin/runc-oom-clamp", clamp, 0o755))
	}
	if f != CRIO {
		for _, r := range mirrored {
			opts = append(opts, WithFile("/etc/containerd/certs.d/"+r+"/hosts.toml", []byte(c.containerdMirror(r)), 0o644))
		}
	}
	return opts, nil
}

func kubeletConfig(endpoint string) string {
	return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: ` + endpoint + `
cgroupDriver: systemd
# The machine's cgroups are v1 (hybrid); nspawn nodes cannot have v2.
failCgroupV1: false
failSwapOn: false
# The API server reaches the kubelet for logs and exec without client certificates.
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
readOnlyPort: 0
# No cluster DNS; the node's own /etc/resolv.conf is the host's business.
resolvConf: ""
nodeStatusUpdateFrequency: 2s
# The nodes live on tmpfs and the host's disk: never evict or collect the test's images.
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
`
}

// kubeProxyConfig leaves every host kernel setting alone (conntrack sizes are global).
const kubeProxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: /etc/kubernetes/kube-proxy.kubeconfig
mode: iptables
clusterCIDR: 10.244.0.0/16
iptables:
  masqueradeAll: true
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
`

// cniConfig is a node's pod network (%d: the node's number).
const cniConfig = `{
  "cniVersion": "1.0.0",
  "name": "testbed",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.244.%d.0/24"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
`

// containerd16Config is Debian's containerd 1.6 config plus what a kubelet node needs:
// runc with the systemd cgroup driver, oom_score_adj kept within what the node may set
// (nspawn has no CAP_SYS_RESOURCE), and registry hosts from certs.d.
const containerd16Config = `version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
`

// containerd2Config is the same for containerd 2.2 (config version 3).
const containerd2Config = `version = 3

[plugins]
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "/etc/containerd/certs.d"
  [plugins."io.containerd.cri.v1.runtime"]
    restrict_oom_score_adj = true
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = ["/usr/lib/cni"]
      conf_dir = "/etc/cni/net.d"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = true
  [plugins."io.containerd.transfer.v1.local"]
    config_path = "/etc/containerd/certs.d"
`

// crioConfig makes CRI-O run pods in the node: runc (Debian's crun is older than the
// OCI spec CRI-O writes) behind a wrapper that clamps a negative oom_score_adj, which
// the node may not set, to 0; the systemd cgroup driver; Debian's CNI plugins.
const crioConfig = `[crio.runtime]
cgroup_manager = "systemd"
default_runtime = "runc"
apparmor_profile = "unconfined"

[crio.runtime.runtimes.runc]
runtime_path = "/usr/local/bin/runc-oom-clamp"
runtime_root = "/run/runc"
monitor_path = "/usr/bin/conmon"

[crio.network]
plugin_dirs = ["/usr/lib/cni"]
`

func (c *Cluster) containerdMirror(r string) string {
	server := "https://" + r
	if r == "docker.io" {
		server = "https://registry-1.docker.io"
	}
	return fmt.Sprintf("server = %q\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", server, c.registry)
}

func (c *Cluster) crioMirrors() string {
	var b strings.Builder
	for _, r := range mirrored {
		fmt.Fprintf(&b, "[[registry]]\nprefix = %q\nlocation = %q\n\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n\n", r, r, c.registry)
	}
	return b.String()
}

// waitNodesReady waits until every node's Node object is Ready.
func (c *Cluster) waitNodesReady(t testing.TB, timeout time.Duration) error {
	cs := c.AdminClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		var notReady []string
		for _, n := range c.nodes {
			obj, err := cs.CoreV1().Nodes().Get(ctx, n.Name(), metav1.GetOptions{})
			if err != nil || !nodeReady(obj) {
				notReady = append(notReady, n.Name())
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodes %v not Ready after %s", notReady, timeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	c := findCondition(n.Status.Conditions, corev1.NodeReady)
	return c != nil && c.Status == corev1.ConditionTrue
}

// buildTool builds one of the testbed's own small programs (internal/testing/testbed/internal/NAME)
// as a static binary and returns its bytes.
func buildTool(name string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "testbed-tool-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "github.com/kata-deploy/kata-deploy/internal/testing/testbed/internal/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build %s: %w: %s", name, err, stderr.String())
	}
	return os.ReadFile(out)
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// StandinShim is the path of the testbed's stand-in for Kata's containerd shim: a
// containerd shim v2 that runs a pod's containers with runc (no VM can run here) and
// records each invocation in the node's /var/log/kata-standin-shim.jsonl.
func (c *Cluster) StandinShim() string { return c.env.standinShim }
