// Package cri asks a node's container runtime, over its CRI socket, which
// runtime handlers it serves: the runtime's own live view, which is what
// an installer verifies after the restart that loads its config (CRI-O,
// for one, starts happily while ignoring a handler whose shim is missing,
// and a unit that systemd reports active may have its CRI plugin failed).
//
// It is apart from package runtime, and from the config engines, so that
// they stay free of gRPC: import it only to verify.
package cri
