// Package runtime is kata-deploy's shared vocabulary: Kata runtime handlers
// and the shims they run, the install modes, the container runtime a node
// uses and how to detect it, and the Plan that every config engine returns.
//
// It depends only on the standard library and a small text diff library, so
// that any installer can import it without pulling in client-go or D-Bus.
package runtime
