// Package nodelabel drives kata-deploy's node labels, node events and
// readiness checks through the Kubernetes API server.
//
// A Client works on one Node, the one its pod runs on:
//
//   - RunRuntimeLabeler is the runtime labeler: it sets
//     kata-containers.io/container-runtime to "containerd" or "crio" from the
//     Node's status.nodeInfo.containerRuntimeVersion and keeps it right,
//     never acting on a transient (a NotReady Node, a runtime the kubelet
//     could not ask) and following a change only once it has lasted
//     (WithSettle). ReleaseRuntimeLabel takes the label off when the
//     labeler's DaemonSet is gone.
//   - SetKataState, KeepKataState and RemoveLabels manage
//     kata-containers.io/kata-runtime: "true" after a verified install,
//     "waiting-restart" after an install whose runtime was not restarted
//     (nothing verified yet), "cleanup" after an uninstall, removed by the
//     cleanup.
//   - RecordEvent records install, uninstall and cleanup events on the
//     Node, shown by kubectl describe node.
//   - WaitReady waits for the Node to be Ready and, where the kubelet reports
//     status.runtimeHandlers, to list Kata's handlers.
//   - DaemonSetTargetsNode tells an installer that is being stopped whether
//     its DaemonSet still targets the node (a rolling update, so no cleanup)
//     or is gone (a removal).
//
// Watches select the one Node by field selector and never resync, so a
// labeler costs one watch and no periodic requests; writes are JSON merge
// patches of metadata.labels that name only kata-deploy's labels, and are
// sent only when a label differs, so a steady node sees no writes.
//
// An API other than NewAPI's that cannot stream a watch-list (see API) must
// say so, or the watches wait for it; clientset.API does this for
// client-go's fake clientset, which tests can use as it is.
//
// LabelerRules, InstallerRules and CleanupRules return the RBAC rules the
// calls need, tested against a real API server.
package nodelabel
