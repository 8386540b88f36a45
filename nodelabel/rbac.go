package nodelabel

import (
	rbacv1 "k8s.io/api/rbac/v1"
)

// The rules below are exactly what this package's calls send to the API
// server; rbac_test.go runs every call as a ServiceAccount bound to only
// these rules on a real API server, and removes each verb in turn to show
// that some call then fails. They are meant for a ClusterRole: Nodes are
// cluster-scoped, and the events rule could be narrowed to a Role in
// namespace "default" (EventNamespace).

// LabelerRules are the rules the runtime labeler needs
// (RunRuntimeLabeler): list and watch its Node (the watch's LIST and WATCH,
// restricted to the Node by field selector, which RBAC cannot express) and
// patch its labels; ReleaseRuntimeLabel reads the labeler's DaemonSet (get).
func LabelerRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list", "watch", "patch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, Verbs: []string{"get"}},
	}
}

// InstallerRules are the rules the installer needs: SetKataState and
// RecordEvent read the Node (get); KeepKataState and WaitReady watch it
// (list, watch); label writes patch it; RecordEvent creates and patches
// core/v1 Events; DaemonSetTargetsNode reads the DaemonSet (get).
func InstallerRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, Verbs: []string{"get"}},
	}
}

// CleanupRules are the rules the cleanup needs: RemoveLabels reads and
// patches the Node; RecordEvent reads the Node and creates and patches
// Events.
func CleanupRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}
}
