// Package testbed runs the real components kata-deploy is tested against: a loopback
// control plane (etcd and kube-apiserver) and nodes that are debootstrapped Debian roots
// booted with systemd-nspawn, real systemd running containerd 1.6, containerd 2.2 or
// CRI-O 1.34 as a unit. StartCluster adds what a real cluster has: a control plane
// with controller-manager and scheduler, nodes with kubelet and kube-proxy, and an
// image registry the nodes pull from, so that DaemonSets run as pods.
//
// Everything it starts comes from the cache that hack/testbed.sh provision fills; tests
// call Require (StartControlPlane and StartNode do it for them) so that a machine without
// that cache, without root or without systemd-nspawn skips with one line saying what is
// missing, and CI (CI=true) fails instead.
//
//	cp := testbed.StartControlPlane(t)
//	n := testbed.StartNode(t, testbed.Containerd2,
//		testbed.WithFile("/etc/containerd/config.toml", userConfig, 0o644))
//	n.Register(t, cp)
//	out, err := n.RunAsPod(ctx, installerBinary, "install")
//
// Each start registers a t.Cleanup that stops what it started and removes its files and
// mounts. Node logs (console, journal) are kept in a per-test directory whose path is
// printed when the test fails. See docs/testbed.md.
package testbed
