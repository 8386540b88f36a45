// Package e2e proves the commands together, end to end, on the testbed's
// real API server and systemd-booted nodes running containerd 1.6,
// containerd 2.2 and CRI-O: the real kata-labeler, kata-installer and
// kata-cleanup binaries run inside the nodes as a DaemonSet's pods would.
package e2e
