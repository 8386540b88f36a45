// Package crio registers Kata runtime handlers with CRI-O.
//
// It never edits crio.conf: the handlers go into one drop-in file in
// /etc/crio/crio.conf.d, named to sort after the distribution's own
// drop-ins, and uninstall removes exactly that file (and the directory, if
// it made it).
package crio
