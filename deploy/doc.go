// Package deploy holds kata-deploy's Kubernetes manifests, embedded so that
// tests and tools apply exactly the files a user applies.
package deploy

import "embed"

// Manifests holds kata-rbac.yaml, kata-deploy.yaml, kata-cleanup.yaml and
// runtimeclasses.yaml.
//
//go:embed *.yaml
var Manifests embed.FS
