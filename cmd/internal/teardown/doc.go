// Package teardown runs the cluster-side steps of removing kata-deploy that
// no node can run: delete the installer DaemonSets and wait for their pods
// to be gone (each uninstalls on SIGTERM), then wait until the cleanup has
// finished on every node. The Helm chart's pre-delete hook runs them.
package teardown
