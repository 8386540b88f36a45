// Package artifacts installs the Kata Containers payload onto a host root,
// atomically, idempotently and safely.
//
// A payload is Kata's kata-static tree (opt/kata/bin/containerd-shim-kata-v2,
// opt/kata/share/defaults/kata-containers/configuration-*.toml, kernels,
// images, hypervisors), given as a directory or as a .tar, .tar.gz, .tar.xz
// or .tar.zst archive, or the Kata 1.x layout (kata-runtime, kata-proxy,
// kata-shim, qemu-system-x86_64 with qemu/*, kata-containers.img,
// vmlinuz.container). A SHA256SUMS manifest at the payload's root, when
// present, must list every file installed, with its digest.
//
// Install puts the tree at <host-root>/opt/kata, or where a
// runtime.Installation says (WithInstallation; WithPrefix and WithSuffix
// set one field each), the same value that names the handlers. Given the
// handlers (WithHandlers), it refuses a payload that would not run them
// before it writes anything. It stages the whole new tree beside the destination, hard-linking
// the files that did not change, makes it durable with one syncfs(2), and
// swaps it in with renameat2(RENAME_EXCHANGE): a process sees the old tree
// or the new one, never a half-written file, and a running shim is never
// written to, so no "text file busy". A crash at any point leaves a
// complete tree in place and the next run finishes or rolls back. A record
// of what was installed (path, type, mode, size, sha256) lives in the tree
// itself, .kata-deploy-record.json, so tree and record are always swapped in
// together. Installing the same payload again compares the record with the
// files' inode, size, mtime and ctime, reads nothing else, and writes
// nothing.
//
// Installed files and directories are the installer's, root's (0:0) on a
// node, whoever owned the payload, and writable by no one else: the shim
// and the hypervisors run as root. Each payload entry keeps its permission
// bits less write for group and others (exec bits kept); sticky and setgid
// bits on directories are dropped, and a payload with a setuid or setgid
// file is refused. An installed entry found with another owner or mode is
// replaced by the next Install.
//
// Before it stages anything, Install checks that the new tree fits beside
// the installed one on the destination's file system (the blocks and
// inodes statfs reports free to unprivileged users, less a reserve of 1 %,
// at least 16 MiB and 1000 inodes) and refuses with a *NoSpaceError if it
// does not; a tarball's entries are checked as their headers arrive,
// before their content is written, so a decompression bomb never fills the
// disk.
//
// Kata's own settings (WithSettings, or one at a time WithDebug,
// WithAllowedHypervisorAnnotations, WithAgentHTTPSProxy, WithAgentNoProxy,
// WithKernelParams; and the paths a prefix or suffix moves) are written,
// only when set, as drop-ins in a config.d of each shim's own directory,
// share/defaults/kata-containers/runtimes/<shim>/, beside a symlink to the
// shim's configuration (runtime.Installation.ConfigPath). Report.Shims
// gives the configuration path to hand the container runtime for each
// shim, and Report.Handlers the handlers themselves.
//
// Uninstall removes exactly what the record lists and the directories it
// created, keeps and reports files it does not own, and leaves no record.
// Every host write is confined to the host root: paths are resolved as the
// host resolves them (an absolute symlink stays inside the root), and the
// tree is built through openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS).
// Concurrent installers serialise on a lock of the destination's parent
// directory.
package artifacts
