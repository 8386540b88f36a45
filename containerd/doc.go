// Package containerd registers Kata runtime handlers with containerd, for
// config versions 1 to 4, on a plain containerd and on the containerd that
// k3s, rke2, k0s and microk8s embed.
//
// It works as plan, apply, uninstall (see Engine). It never re-serialises
// the user's file: on containerd 2.1 and later the handlers go into a
// drop-in of their own, imported by the config; on earlier releases, which
// let an imported plugin table replace the main one whole, they are
// appended as one marked block to the file that holds the CRI plugin's
// settings. Before 1.7 it also links each handler's shim into
// /usr/local/bin, where containerd 1.6 looks for it. Every change is
// recorded under /var/lib/kata-deploy before it is made, so that uninstall
// restores the exact former bytes.
package containerd
