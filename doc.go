// Package katadeploy is the root of kata-deploy, a library and a set of small
// commands that install Kata Containers onto the nodes of a Kubernetes cluster.
//
// The public packages each own one concern:
//
//   - runtime: the shared vocabulary: Kata runtime handlers, install modes,
//     container runtime detection, the Installation (where Kata goes, what
//     its handlers are called), and the Plan type every config engine returns.
//   - runtime/cri: asks a runtime over its CRI socket which handlers it
//     serves, to verify an install (apart, so the others stay free of gRPC).
//   - containerd: registers Kata handlers with containerd (config versions 1-4,
//     k3s, rke2, k0s, microk8s) without rewriting the user's file.
//   - crio: registers Kata handlers with CRI-O through a drop-in.
//   - artifacts: installs the Kata payload under a host root, atomically.
//   - nodelabel: labels nodes and records events through the API server.
//   - systemd: restarts container runtimes through systemd's D-Bus API.
//
// The commands under cmd/ compose these packages into the labeler, installer
// and cleanup images. Another installer composes them the same way: see
// Example_anotherInstaller for the whole install, with its rollback.
package katadeploy
