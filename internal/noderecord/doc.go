// Package noderecord keeps the node's own record of what kata-deploy
// installed and where: the runtime it configured, the install's prefix,
// suffix and destination, the handlers with their shim and Kata config
// paths, and whether the runtime was verified to serve them.
//
// Every command that acts on an existing install reads it instead of
// trusting its own flags: status reports it, uninstall and cleanup undo what
// it names even when called with other flags. It lives beside the config
// engines' journals under /var/lib/kata-deploy, one file per install
// (install.json, or install-<suffix>.json for a named second install).
//
// The record is written before the first change it describes, so that a
// crash at any point leaves a record that names at least what is on the
// host. An uninstall without an API server removes it after its last
// change; with one, it keeps it in state "uninstalled" for kata-cleanup,
// which removes it once it has restarted what the record names.
package noderecord
