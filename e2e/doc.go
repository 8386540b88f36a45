// Package e2e proves the commands together, end to end, on the testbed's
// real API server and systemd-booted nodes running containerd 1.6,
// containerd 2.2 and CRI-O. Most tests run the real kata-labeler,
// kata-installer and kata-cleanup binaries in the nodes' namespaces with
// the whole node root as host root; the cluster tests (cluster_test.go,
// helm_test.go) run the DaemonSets as pods, from the manifests, the chart
// and the image, under real kubelets (testbed.StartCluster).
package e2e
