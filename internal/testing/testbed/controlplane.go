package testbed

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ControlPlane is etcd and kube-apiserver on 127.0.0.1 with random ports, RBAC
// authorization, and certificates, keys and tokens generated for this run.
type ControlPlane struct {
	host       string // https://127.0.0.1:PORT
	caPEM      []byte
	adminToken string
	kubeconfig string
	logDir     string
	dir        string  // certificates, keys, tokens
	api        *daemon // kube-apiserver, for the faults that stop it
}

// cpOptions are the differences between the loopback control plane and a cluster's.
type cpOptions struct {
	bindAddr string   // default 127.0.0.1
	port     int      // default: a free port
	tokens   []string // more tokens.csv lines (kubelets, kube-proxy)
	// cluster: the API server serves nodes with kubelets: the kubernetes Service gets
	// bindAddr as its endpoint, kubelets are authorised as nodes and dialled by address.
	cluster bool
}

// controlPlaneStartTimeout bounds etcd plus kube-apiserver becoming ready.
const controlPlaneStartTimeout = 90 * time.Second

// StartControlPlane starts etcd and kube-apiserver for the test and stops them in
// t.Cleanup. It skips (or fails under CI=true) when the testbed is not provisioned.
func StartControlPlane(t testing.TB) *ControlPlane {
	t.Helper()
	e := requireEnv(t)
	logDir := newLogDir(t, "controlplane")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), controlPlaneStartTimeout)
	defer cancel()
	var lastErr error
	// A port found free can be taken before the daemon binds it: retry a few times.
	for attempt := 0; attempt < 3; attempt++ {
		c, stop, err := startControlPlane(ctx, e, filepath.Join(dir, strconv.Itoa(attempt)), logDir, cpOptions{})
		if err == nil {
			t.Cleanup(func() { stopControlPlane(t, stop) })
			return c
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	t.Fatalf("testbed: start control plane (logs in %s): %v", logDir, lastErr)
	return nil
}

func startControlPlane(ctx context.Context, e *env, dir, logDir string, o cpOptions) (c *ControlPlane, stop func() error, err error) {
	if o.bindAddr == "" {
		o.bindAddr = "127.0.0.1"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("control plane dir: %w", err)
	}
	var daemons []*daemon
	stopAll := func() error {
		var errs []error
		for i := len(daemons) - 1; i >= 0; i-- {
			errs = append(errs, daemons[i].stop(syscall.SIGTERM, 15*time.Second))
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			_ = stopAll()
		}
	}()

	etcdPort, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	etcd, err := startDaemon("etcd", exec.Command(e.etcd,
		"--name", "testbed",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "testbed="+peerURL,
		"--log-level", "warn",
	), filepath.Join(logDir, "etcd.log"), syscall.SIGKILL)
	if err != nil {
		return nil, nil, err
	}
	daemons = append(daemons, etcd)
	if err := waitHTTP(ctx, etcd, etcdURL+"/health", nil, ""); err != nil {
		return nil, nil, fmt.Errorf("etcd: %w", err)
	}

	caPEM, certPEM, keyPEM, err := servingCerts(net.ParseIP(o.bindAddr), net.ParseIP(kubernetesServiceIP))
	if err != nil {
		return nil, nil, err
	}
	saKeyPEM, saPubPEM, err := signingKey()
	if err != nil {
		return nil, nil, err
	}
	adminToken := randHex(16)
	files := map[string][]byte{
		"ca.crt":        caPEM,
		"apiserver.crt": certPEM,
		"apiserver.key": keyPEM,
		"sa.key":        saKeyPEM,
		"sa.pub":        saPubPEM,
		"tokens.csv":    []byte(strings.Join(append([]string{adminToken + ",testbed-admin,testbed-admin,system:masters"}, o.tokens...), "\n") + "\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, nil, fmt.Errorf("control plane files: %w", err)
		}
	}
	port := o.port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, nil, err
		}
	}
	host := "https://" + net.JoinHostPort(o.bindAddr, strconv.Itoa(port))
	args := []string{
		"--etcd-servers", etcdURL,
		"--bind-address", o.bindAddr,
		"--advertise-address", o.bindAddr,
		"--secure-port", strconv.Itoa(port),
		"--cert-dir", filepath.Join(dir, "certs"),
		"--tls-cert-file", filepath.Join(dir, "apiserver.crt"),
		"--tls-private-key-file", filepath.Join(dir, "apiserver.key"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range", serviceCIDR,
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	}
	if o.cluster {
		args = append(args,
			"--authorization-mode", "Node,RBAC",
			// The nodes' kubelets, for logs and exec: dialled on their veth address.
			"--kubelet-preferred-address-types", "InternalIP",
		)
	} else {
		args = append(args,
			"--authorization-mode", "RBAC",
			// No kubernetes Service endpoints: its reconciler refuses loopback addresses.
			"--endpoint-reconciler-type=none",
		)
	}
	api, err := startDaemon("kube-apiserver", exec.Command(e.kubeAPIServer, args...),
		filepath.Join(logDir, "kube-apiserver.log"), syscall.SIGKILL)
	if err != nil {
		return nil, nil, err
	}
	daemons = append(daemons, api)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	if err := waitHTTP(ctx, api, host+"/readyz", pool, adminToken); err != nil {
		return nil, nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	c = &ControlPlane{host: host, caPEM: caPEM, adminToken: adminToken, logDir: logDir, dir: dir,
		kubeconfig: filepath.Join(dir, "admin.kubeconfig"), api: api}
	if err := c.writeKubeconfig(); err != nil {
		return nil, nil, err
	}
	return c, stopAll, nil
}

// waitHTTP polls url until it answers 200, the daemon exits or ctx ends.
func waitHTTP(ctx context.Context, d *daemon, url string, pool *x509.CertPool, token string) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	defer client.CloseIdleConnections()
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("poll %s: %w", url, err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-d.done:
			return fmt.Errorf("exited (%v) before %s answered", d.err, url)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready (last: %s): %w", url, last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// The Services' address range, and the kubernetes Service's address in it.
const (
	serviceCIDR         = "10.96.0.0/16"
	kubernetesServiceIP = "10.96.0.1"
)

// servingCerts makes a throw-away CA and a serving certificate for ips and the
// kubernetes Service's names.
func servingCerts(ips ...net.IP) (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ca key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kata-deploy-testbed-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ca cert: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ca cert: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  ips,
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("serving cert: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("serving key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// signingKey makes the service-account token signing key pair.
func signingKey() (keyPEM, pubPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("service account key: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("service account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("service account key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

// KubeconfigFor returns a kubeconfig for the API server that authenticates
// user with a bearer token.
func (c *ControlPlane) KubeconfigFor(user, token string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testbed"] = &clientcmdapi.Cluster{Server: c.host, CertificateAuthorityData: c.caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["testbed"] = &clientcmdapi.Context{Cluster: "testbed", AuthInfo: user}
	cfg.CurrentContext = "testbed"
	return clientcmd.Write(*cfg)
}

func (c *ControlPlane) writeKubeconfig() error {
	data, err := c.KubeconfigFor("testbed-admin", c.adminToken)
	if err == nil {
		err = os.WriteFile(c.kubeconfig, data, 0o600)
	}
	if err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// Host is the API server's URL (https://127.0.0.1:PORT).
func (c *ControlPlane) Host() string { return c.host }

// CAData is the PEM certificate that signed the API server's serving certificate.
func (c *ControlPlane) CAData() []byte { return append([]byte(nil), c.caPEM...) }

// LogDir is where etcd's and kube-apiserver's logs go (kept if the test fails).
func (c *ControlPlane) LogDir() string { return c.logDir }

// AdminConfig returns a new client configuration for a cluster admin
// (group system:masters).
func (c *ControlPlane) AdminConfig() *rest.Config {
	return &rest.Config{
		Host:            c.host,
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData()},
		QPS:             100,
		Burst:           200,
	}
}

// Kubeconfig is the path of a kubeconfig file for the admin (for kubectl, or for code
// under test that takes a kubeconfig).
func (c *ControlPlane) Kubeconfig() string { return c.kubeconfig }

// AdminClient is a clientset for AdminConfig.
func (c *ControlPlane) AdminClient(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatalf("testbed: admin client: %v", err)
	}
	return cs
}

// ServiceAccountConfig returns a client configuration that acts as the ServiceAccount
// namespace/name, creating the namespace and the ServiceAccount if they do not exist.
// Its token comes from the TokenRequest API and is valid for an hour. The account has
// only what RBAC objects grant it.
func (c *ControlPlane) ServiceAccountConfig(t testing.TB, namespace, name string) *rest.Config {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := c.serviceAccountConfig(ctx, namespace, name)
	if err != nil {
		t.Fatalf("testbed: service account %s/%s: %v", namespace, name, err)
	}
	return cfg
}

func (c *ControlPlane) serviceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		return nil, fmt.Errorf("admin client: %w", err)
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace: %w", err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	_, err = cs.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create service account: %w", err)
	}
	expiry := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token request: %w", err)
	}
	return &rest.Config{
		Host:            c.host,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData()},
	}, nil
}
