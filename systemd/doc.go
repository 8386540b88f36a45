// Package systemd restarts and inspects the host's systemd units over
// systemd's own D-Bus API, the way kata-deploy's installer restarts a
// container runtime after changing its configuration.
//
// It talks directly to systemd's private socket under the host root
// (<host-root>/run/systemd/private by default): no bus daemon, no Hello, no
// nsenter and no systemctl binary. That socket only answers peers in the
// host's PID namespace or in a child of it, which is where any pod sits
// (no hostPID, no privilege needed), given uid 0 and the host's
// /run/systemd mounted.
//
// Every call takes a context. A restart waits for systemd's job result.
// "done" is success. A restart that leaves the unit failed (systemd's start
// limit counts restarts asked for over D-Bus) is reset, as "systemctl
// reset-failed" does, and tried once more; a failed restart that systemd's
// own automatic restart (Restart=) then brings up counts as success. Any
// other outcome is a *UnitError that names the unit, the job result and the
// state the unit was left in (see Client.Restart). RestartIfNeeded skips the
// restart when the unit became active after its configuration was last
// written, so an installer killed by its own restart and started again
// converges without restarting the runtime a second time.
package systemd
