#!/usr/bin/env bash
# Checks what `make demo` and `make test` need before they start, and says
# which is missing and how to get it, instead of failing minutes in.
#
#   hack/prereqs.sh    # everything make demo / make test need (the Makefile runs it)
set -uo pipefail
cd "$(dirname "$0")/.."

CACHE=${KATA_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kata-deploy}
problems=()
missing() { problems+=("$*"); }

# root: apt-get, debootstrap and systemd-nspawn.
[ "$(id -u)" -eq 0 ] || missing "root: run as root (provisioning uses apt-get, debootstrap and systemd-nspawn)"

# Go at the version go.mod names (Debian 12's golang is 1.19).
want=$(sed -n 's/^go //p' go.mod)
if ! command -v go >/dev/null; then
	missing "go $want or later on PATH: install it from https://go.dev/dl/ (Debian 12's golang package is too old), e.g. PATH=\$PATH:/usr/local/go/bin"
else
	have=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
	if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
		missing "go $want or later (go.mod), found go $have: install it from https://go.dev/dl/"
	fi
fi

# git: make vet's gofmt check lists the files to check with git.
if ! command -v git >/dev/null; then
	missing "git: make vet checks formatting of the files git tracks (apt-get install git)"
elif ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	missing "a git checkout: make vet checks formatting of the files git tracks, and this is not a git work tree"
fi

# systemd-nspawn boots the nodes on overlayfs roots: both must be there.
command -v systemd-nspawn >/dev/null || [ ! -f "$CACHE/testbed.env" ] ||
	missing "systemd-nspawn (apt-get install systemd-container)"
[ -d /sys/fs/cgroup ] && [ -n "$(ls -A /sys/fs/cgroup 2>/dev/null)" ] ||
	missing "a mounted /sys/fs/cgroup: systemd-nspawn needs cgroups (a container without them cannot boot the test nodes)"
if ! grep -qw overlay /proc/filesystems 2>/dev/null && ! modprobe -n overlay 2>/dev/null; then
	missing "overlayfs in the kernel (modprobe overlay): the test nodes' roots are overlays"
fi

need_proxy() {
	local proxy
	proxy=$(go env GOPROXY 2>/dev/null | cut -d, -f1)
	if [ -n "$proxy" ] && [ "$proxy" != off ] && [ "$proxy" != direct ] && command -v curl >/dev/null &&
		! curl -fsS --max-time 15 -o /dev/null "$proxy/github.com/google/go-cmp/@v/list"; then
		missing "network to the Go module proxy $proxy ($1)"
	fi
}

# make vet builds its pinned staticcheck from the module proxy once, into
# the same cache (see the Makefile): a provisioned machine needs the proxy
# again when that version (or Go's) is new to it.
sc_version=$(sed -n 's/^STATICCHECK_VERSION := //p' Makefile)
if [ -f "$CACHE/testbed.env" ] && [ -n "$sc_version" ] && command -v go >/dev/null &&
	[ ! -x "$CACHE/tools/staticcheck-$sc_version-$(go env GOVERSION)/staticcheck" ]; then
	need_proxy "make vet builds staticcheck $sc_version from it"
fi

# Network and disk only matter until the testbed is provisioned.
if [ ! -f "$CACHE/testbed.env" ]; then
	if command -v apt-get >/dev/null; then
		mirror=$(grep -rhE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
			grep -oE 'https?://[^ ]*debian[^ ]*' | grep -v security | head -n1)
		if [ -n "$mirror" ] && command -v curl >/dev/null && ! curl -fsSI --max-time 15 "${mirror%/}/" >/dev/null 2>&1; then
			missing "network to the Debian mirror $mirror (apt-get and debootstrap)"
		fi
	else
		missing "apt-get: provisioning installs Debian packages (Debian 12 expected)"
	fi
	need_proxy "kube-apiserver, containerd and CRI-O are built from it"
	mkdir -p "$CACHE" 2>/dev/null
	free=$(df -Pk "$CACHE" 2>/dev/null | awk 'NR==2 {print int($4/1024/1024)}')
	gocache=$(df -Pk "$(go env GOMODCACHE 2>/dev/null || echo /)" 2>/dev/null | awk 'NR==2 {print int($4/1024/1024)}')
	if [ -n "$free" ] && [ "$free" -lt 4 ]; then
		missing "4 GiB free for $CACHE (the testbed cache is about 1 GiB, its builds need more), found ${free} GiB"
	fi
	if [ -n "$gocache" ] && [ "$gocache" -lt 3 ]; then
		missing "3 GiB free for Go's module and build caches ($(go env GOMODCACHE)), found ${gocache} GiB"
	fi
fi

if [ "${#problems[@]}" -gt 0 ]; then
	echo "kata-deploy: cannot run here yet; missing:" >&2
	printf '  - %s\n' "${problems[@]}" >&2
	exit 1
fi
echo "prerequisites: all present"
