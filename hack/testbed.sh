#!/usr/bin/env bash
# hack/testbed.sh: provision the real-node testbed used by internal/testing/testbed (docs/testbed.md).
#
#   hack/testbed.sh provision   install host packages, build the pinned binaries and the
#                               node root; idempotent, everything cached by version
#   hack/testbed.sh rootfs      only the node root (debugging debootstrap)
#   hack/testbed.sh env         print the manifest the Go package reads
#   hack/testbed.sh clean       remove the cache (asks nothing)
#
# Cache: ${KATA_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kata-deploy}. Every artefact
# lives in a directory whose name carries its version (and a recipe revision), so a
# second run finds everything and takes seconds. The manifest testbed.env is written last.
set -euo pipefail

K8S_VERSION=v1.37.2
K8S_STAGING_VERSION=v0.37.2
CONTAINERD_VERSION=v2.2.9
CRIO_VERSION=v1.34.0
CRICTL_VERSION=v1.37.0
DEBIAN_SUITE=bookworm
# Bump when the node root's package list or customisation changes.
ROOTFS_REV=1
# Bump when what goes into a flavour layer changes.
LAYER_REV=1
# The kubelet layer's files; its cache key is their digest and this revision of its recipe.
KUBE_LAYER_REV=2
KUBE_LAYER_SRC=$(cd "$(dirname "$0")" && pwd)/testbed

ROOTFS_PACKAGES=systemd,systemd-sysv,dbus,containerd,runc,conmon,crun,iptables,procps,iproute2,kmod,ca-certificates
HOST_PACKAGES=(etcd-server containerd runc debootstrap systemd-container conmon crun iptables
	openssl zstd xz-utils gcc util-linux)

CACHE=${KATA_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kata-deploy}
MANIFEST=$CACHE/testbed.env
START=$(date +%s)

log() { printf '[testbed %4ds] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# step NAME LOGFILE CMD...: run CMD with its output in LOGFILE, print timing, show the
# log's tail on failure.
step() {
	local name=$1 logf=$2 t0 rc
	shift 2
	t0=$(date +%s)
	log "$name ..."
	mkdir -p "$(dirname "$logf")"
	set +e
	"$@" >"$logf" 2>&1
	rc=$?
	set -e
	if [ "$rc" -ne 0 ]; then
		tail -n 40 "$logf" >&2
		die "$name failed (exit $rc), full log: $logf"
	fi
	log "$name done in $(($(date +%s) - t0))s"
}

need_root() {
	[ "$(id -u)" -eq 0 ] || die "provisioning needs root (apt-get, debootstrap, mknod)"
}

install_host_packages() {
	local missing=() p
	for p in "${HOST_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		log "host packages: all present"
		return
	fi
	log "host packages: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	step "apt-get update" "$CACHE/logs/apt-update.log" apt-get update
	# policy-rc.d keeps packages such as etcd-server from starting their daemons on hosts
	# that run systemd: the testbed starts its own etcd on a random port.
	local prc=/usr/sbin/policy-rc.d had_prc=
	[ -e "$prc" ] && had_prc=1
	if [ -z "$had_prc" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$prc"
		chmod +x "$prc"
	fi
	# policy-rc.d stops the daemons from starting, not postinst from enabling them: note
	# what is enabled and running before, and afterwards disable and stop whatever the
	# install added, so that no service runs on the host (or after its reboot) that the
	# user did not have.
	local systemd_up= enabled_before= active_before=
	if [ -d /run/systemd/system ]; then
		systemd_up=1
		enabled_before=$(systemctl list-unit-files --state=enabled --no-legend --plain | awk '{print $1}' | sort)
		active_before=$(systemctl list-units --state=active --no-legend --plain | awk '{print $1}' | sort)
	fi
	step "apt-get install" "$CACHE/logs/apt-install.log" \
		apt-get install -y --no-install-recommends "${missing[@]}"
	[ -n "$had_prc" ] || rm -f "$prc"
	if [ -n "$systemd_up" ]; then
		local u
		for u in $(comm -13 <(echo "$enabled_before") <(systemctl list-unit-files --state=enabled --no-legend --plain | awk '{print $1}' | sort)); do
			log "host packages: disabling $u, which the install enabled"
			systemctl disable --quiet "$u" || die "cannot disable $u"
		done
		for u in $(comm -13 <(echo "$active_before") <(systemctl list-units --state=active --no-legend --plain | awk '{print $1}' | sort)); do
			case "$u" in *.service | *.socket | *.timer) ;; *) continue ;; esac
			log "host packages: stopping $u, which the install started"
			systemctl stop --quiet "$u" || die "cannot stop $u"
		done
	fi
}

# The Debian mirror apt uses here, so debootstrap fetches from the same place.
debian_mirror() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		uri=$(awk -v suite="$DEBIAN_SUITE" '
			/^URIs:/ {u=$2}
			/^Suites:/ {for (i = 2; i <= NF; i++) if ($i == suite) s=1}
			/^$/ {if (u != "" && s && !done) {print u; done=1} u=""; s=0}
			END {if (u != "" && s && !done) print u}' "$f")
		[ -n "$uri" ] && {
			echo "$uri"
			return
		}
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -e "$f" ] || continue
		uri=$(awk -v suite="$DEBIAN_SUITE" '$1 == "deb" && $0 !~ /\[/ && $3 == suite {print $2; exit}
			$1 == "deb" && $2 ~ /^\[/ && $4 == suite {print $3; exit}' "$f")
		[ -n "$uri" ] && {
			echo "$uri"
			return
		}
	done
	echo http://deb.debian.org/debian
}

# Go environment for the throw-away wrapper modules: never the project's go.mod.
go_env() {
	export GOWORK=off GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
}

# wrapper_module DIR NAME: a fresh module in DIR (kept for the next run's go.sum).
wrapper_module() {
	local dir=$1
	mkdir -p "$dir"
	if [ ! -f "$dir/go.mod" ]; then
		printf 'module testbed.local/%s\n\ngo 1.25\n' "$2" >"$dir/go.mod"
	fi
}

# copy_replaces GOMOD STAGING_VERSION: apply a dependency's own replace directives to the
# wrapper module in the current directory (replace directives only apply in the main
# module). Local-path targets (k8s staging) become STAGING_VERSION of the same module.
copy_replaces() {
	local gomod=$1 staging=$2
	[ -f "$gomod" ] || {
		echo "copy_replaces: no go.mod at '$gomod'" >&2
		return 1
	}
	awk '
		/^replace[ \t]*\(/ {blk=1; next}
		blk && /^\)/ {blk=0; next}
		blk {print; next}
		/^replace[ \t]/ {sub(/^replace[ \t]+/, ""); print}' "$gomod" |
		sed 's://.*$::' | while read -r lhs a b c d; do
		[ -n "$lhs" ] || continue
		# forms: "mod => target [ver]" or "mod ver => target [ver]"
		local from=$lhs to tver
		if [ "$a" = "=>" ]; then
			to=$b tver=$c
		else
			from="$lhs@$a" to=$c tver=$d
		fi
		case $to in
		./* | ../*)
			[ -n "$staging" ] || continue
			go mod edit -replace="$from=${lhs}@${staging}" || exit 1
			;;
		*)
			go mod edit -replace="$from=$to${tver:+@$tver}" || exit 1
			;;
		esac
	done
}

modfile() { # modfile MODULE@VERSION -> path of its go.mod in the module cache
	go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p'
}
moddir() { # moddir MODULE@VERSION -> its source directory in the module cache
	go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p'
}

# Each Go artefact is built in two steps: prepare_NAME makes the wrapper module and runs
# `go get` (mostly downloads: network bound), compile_NAME runs `go build` (CPU bound).
# They run in subshells on the right of `||`, where set -e does not apply: every
# command carries its own `|| return`.
# provision overlaps the later artefacts' downloads with the first compile.
W_kube=$CACHE/build/kubernetes-$K8S_VERSION
W_containerd=$CACHE/build/containerd-$CONTAINERD_VERSION
W_crio=$CACHE/build/crio-$CRIO_VERSION
W_crictl=$CACHE/build/crictl-$CRICTL_VERSION
OUT_kube=$CACHE/kubernetes-$K8S_VERSION
OUT_containerd=$CACHE/containerd-$CONTAINERD_VERSION
OUT_crio=$CACHE/crio-$CRIO_VERSION
OUT_crictl=$CACHE/crictl-$CRICTL_VERSION
CRIO_TAGS="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
CTRD_MOD=github.com/containerd/containerd/v2

prepare_kube() {
	cd "$W_kube" || return
	go mod edit -require="k8s.io/kubernetes@$K8S_VERSION" || return
	copy_replaces "$(modfile "k8s.io/kubernetes@$K8S_VERSION")" "$K8S_STAGING_VERSION" || return
	go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" || return
}
# The control plane, a node's kubelet and kube-proxy, and kubectl: one cluster from one
# source tree. They share most of the compile, so the later ones take seconds each.
KUBE_CMDS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
compile_kube() {
	cd "$W_kube" || return
	local c
	for c in $KUBE_CMDS; do
		# Static: kubelet and kube-proxy run inside the nodes.
		CGO_ENABLED=0 go build -trimpath -o "$OUT_kube.tmp/$c" \
			-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
			"k8s.io/kubernetes/cmd/$c" || return
	done
}
built_kube() {
	local c
	for c in $KUBE_CMDS; do [ -x "$OUT_kube/$c" ] || return 1; done
}

prepare_containerd() {
	cd "$W_containerd" || return
	go mod edit -require="$CTRD_MOD@$CONTAINERD_VERSION" || return
	copy_replaces "$(modfile "$CTRD_MOD@$CONTAINERD_VERSION")" "" || return
	go get "$CTRD_MOD/cmd/containerd@$CONTAINERD_VERSION" "$CTRD_MOD/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" || return
}
compile_containerd() {
	cd "$W_containerd" || return
	local ld="-s -w -X $CTRD_MOD/version.Version=$CONTAINERD_VERSION -X $CTRD_MOD/version.Package=github.com/containerd/containerd/v2"
	# Static like upstream's release binaries: they also run in the node and chroots.
	CGO_ENABLED=0 go build -trimpath -o "$OUT_containerd.tmp/containerd" -ldflags "$ld" "$CTRD_MOD/cmd/containerd" || return
	CGO_ENABLED=0 go build -trimpath -o "$OUT_containerd.tmp/containerd-shim-runc-v2" -ldflags "$ld" "$CTRD_MOD/cmd/containerd-shim-runc-v2" || return
}
built_containerd() { [ -x "$OUT_containerd/containerd" ] && [ -x "$OUT_containerd/containerd-shim-runc-v2" ]; }

# The test payload's stand-in for containerd-shim-kata-v2 (docs/standin-shim.md): containerd's
# runc shim plus a recorder, built in the containerd wrapper module (same dependency versions).
# Cached by the source's checksum; a containerd rebuild replaces $OUT_containerd and so this too.
STANDIN_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/testbed/standin-shim/main.go
STANDIN_SHIM=$OUT_containerd/containerd-shim-kata-standin
build_standin_shim() {
	local sum
	sum=$(sha256sum "$STANDIN_SRC" | cut -d' ' -f1)
	if [ -x "$STANDIN_SHIM" ] && [ "$(cat "$STANDIN_SHIM.sha256" 2>/dev/null)" = "$sum" ]; then
		log "stand-in shim: cached"
		return
	fi
	log "stand-in shim: building"
	prepare containerd || die "stand-in shim: go get failed, log: $CACHE/logs/containerd.prepare.log"
	(
		go_env
		local main=$W_containerd/cmd/standin-shim/main.go
		cd "$W_containerd" && mkdir -p "$(dirname "$main")" && cp "$STANDIN_SRC" "$main" &&
			# Naming the file builds it despite its `//go:build ignore`.
			CGO_ENABLED=0 go build -trimpath -o "$STANDIN_SHIM.tmp" \
				-ldflags "-s -w -X $CTRD_MOD/version.Version=$CONTAINERD_VERSION-kata-standin" "$main"
	) >"$CACHE/logs/standin-shim.log" 2>&1 || {
		tail -n 40 "$CACHE/logs/standin-shim.log" >&2
		die "stand-in shim: build failed, log: $CACHE/logs/standin-shim.log"
	}
	mv "$STANDIN_SHIM.tmp" "$STANDIN_SHIM"
	echo "$sum" >"$STANDIN_SHIM.sha256"
}

# Two of CRI-O's dependencies are not in the checksum database.
crio_env() { export GONOSUMDB=github.com/containerd/nri,github.com/CloudNativeAI/model-spec; }
prepare_crio() {
	cd "$W_crio" || return
	crio_env || return
	go mod edit -require="github.com/cri-o/cri-o@$CRIO_VERSION" || return
	copy_replaces "$(modfile "github.com/cri-o/cri-o@$CRIO_VERSION")" "" || return
	go get -tags "$CRIO_TAGS" "github.com/cri-o/cri-o/cmd/crio@$CRIO_VERSION" || return
}
compile_crio() {
	cd "$W_crio" || return
	crio_env || return
	go build -trimpath -tags "$CRIO_TAGS" -o "$OUT_crio.tmp/crio" -ldflags "-s -w" github.com/cri-o/cri-o/cmd/crio || return
	local src
	src=$(moddir "github.com/cri-o/cri-o@$CRIO_VERSION") || return
	gcc -O2 -std=c99 -Wall -o "$OUT_crio.tmp/pinns" "$src"/pinns/src/*.c || return
}
built_crio() { [ -x "$OUT_crio/crio" ] && [ -x "$OUT_crio/pinns" ]; }

prepare_crictl() {
	cd "$W_crictl" || return
	go mod edit -require="sigs.k8s.io/cri-tools@$CRICTL_VERSION" || return
	copy_replaces "$(modfile "sigs.k8s.io/cri-tools@$CRICTL_VERSION")" "" || return
	go get "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" || return
}
compile_crictl() {
	cd "$W_crictl" || return
	CGO_ENABLED=0 go build -trimpath -o "$OUT_crictl.tmp/crictl" \
		-ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl || return
}
built_crictl() { [ -x "$OUT_crictl/crictl" ]; }

# prepare NAME: the wrapper module and its downloads, once (stamp file in the wrapper).
prepare() {
	local name=$1 w out
	w=W_$name
	w=${!w}
	[ -f "$w/.prepared" ] && return 0
	log "$name: go get (module downloads)"
	wrapper_module "$w" "$name"
	(
		go_env
		"prepare_$name"
	) >"$CACHE/logs/$name.prepare.log" 2>&1 || return 1
	touch "$w/.prepared"
}

# build NAME LABEL: prepare (if not yet) and compile one artefact, atomically into place.
build() {
	local name=$1 label=$2 out t0
	out=OUT_$name
	out=${!out}
	if "built_$name"; then
		log "$label: cached"
		return
	fi
	t0=$(date +%s)
	log "$label: building"
	prepare "$name" || {
		tail -n 40 "$CACHE/logs/$name.prepare.log" >&2
		die "$label: go get failed, log: $CACHE/logs/$name.prepare.log"
	}
	rm -rf "$out.tmp" && mkdir -p "$out.tmp"
	(
		go_env
		"compile_$name"
	) >"$CACHE/logs/$name.log" 2>&1 || {
		tail -n 40 "$CACHE/logs/$name.log" >&2
		die "$label: build failed, log: $CACHE/logs/$name.log"
	}
	rm -rf "$out" && mv "$out.tmp" "$out"
	log "$label: built in $(($(date +%s) - t0))s"
}

ROOTFS_NAME=$DEBIAN_SUITE-r$ROOTFS_REV
ROOTFS_TAR=$CACHE/rootfs/$ROOTFS_NAME.tar.zst
ROOTFS_DIR=$CACHE/rootfs/$ROOTFS_NAME

# build_rootfs: debootstrap once, customise, store as a tarball; the extracted tree next
# to it is the read-only lower layer every node's overlay starts from.
build_rootfs() {
	if [ ! -f "$ROOTFS_TAR" ]; then
		local mirror tmp
		mirror=$(debian_mirror)
		tmp=$CACHE/rootfs/.debootstrap-$$
		rm -rf "$tmp"
		mkdir -p "$tmp"
		log "node root: debootstrap $DEBIAN_SUITE from $mirror"
		debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" "$DEBIAN_SUITE" "$tmp" "$mirror" \
			>"$CACHE/logs/debootstrap.log" 2>&1 || {
			tail -n 40 "$CACHE/logs/debootstrap.log" >&2
			rm -rf "$tmp"
			die "debootstrap failed, log: $CACHE/logs/debootstrap.log"
		}
		customise_rootfs "$tmp"
		tar --numeric-owner --xattrs -C "$tmp" -cf - . | zstd -q -T0 -3 -o "$ROOTFS_TAR.tmp"
		mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
		rm -rf "$ROOTFS_DIR"
		mv "$tmp" "$ROOTFS_DIR"
		log "node root: $(du -sh "$ROOTFS_TAR" | cut -f1) tarball"
	fi
	if [ ! -d "$ROOTFS_DIR/usr" ]; then
		log "node root: extracting $ROOTFS_TAR"
		rm -rf "$ROOTFS_DIR.tmp"
		mkdir -p "$ROOTFS_DIR.tmp"
		zstd -q -d -c "$ROOTFS_TAR" | tar --numeric-owner --xattrs -C "$ROOTFS_DIR.tmp" -xf -
		rm -rf "$ROOTFS_DIR"
		mv "$ROOTFS_DIR.tmp" "$ROOTFS_DIR"
	fi
}

customise_rootfs() {
	local r=$1
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
	# nspawn sets the hostname per node; machine-id is generated at each boot.
	rm -f "$r/etc/hostname"
	: >"$r/etc/machine-id"
	# Nothing to log in on; keep boots quick and journals clean.
	ln -sf /dev/null "$r/etc/systemd/system/console-getty.service"
	ln -sf /dev/null "$r/etc/systemd/system/getty.target"
	ln -sf /dev/null "$r/etc/systemd/system/systemd-logind.service"
	mkdir -p "$r/etc/systemd/system.conf.d"
	printf '[Manager]\nDefaultTimeoutStopSec=10s\n' >"$r/etc/systemd/system.conf.d/testbed.conf"
}

# whiteout DIR PATH: hide PATH of the lower layers in an overlay upper/lower layer DIR.
whiteout() {
	mkdir -p "$(dirname "$1/$2")"
	rm -f "$1/$2"
	mknod "$1/$2" c 0 0
}

# Flavour layers sit between a node's writable layer and the base root.
build_layers() {
	local l
	l=$CACHE/layers/containerd-1.6-r$LAYER_REV
	if [ ! -d "$l" ]; then
		rm -rf "$l.tmp" && mkdir -p "$l.tmp/usr/local/bin" "$l.tmp/etc"
		cp "$CACHE/crictl-$CRICTL_VERSION/crictl" "$l.tmp/usr/local/bin/"
		printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\n' >"$l.tmp/etc/crictl.yaml"
		mv "$l.tmp" "$l"
	fi
	LAYER_CONTAINERD16=$l

	l=$CACHE/layers/containerd-2.2-$CONTAINERD_VERSION-r$LAYER_REV
	if [ ! -d "$l" ]; then
		rm -rf "$l.tmp" && mkdir -p "$l.tmp/usr/bin" "$l.tmp/usr/local/bin" "$l.tmp/etc"
		# Same unit as Debian's package, the upstream 2.x binaries in its place, and no
		# distribution config (an upstream install has none).
		cp "$CACHE/containerd-$CONTAINERD_VERSION/containerd" \
			"$CACHE/containerd-$CONTAINERD_VERSION/containerd-shim-runc-v2" "$l.tmp/usr/bin/"
		whiteout "$l.tmp" etc/containerd/config.toml
		cp "$CACHE/crictl-$CRICTL_VERSION/crictl" "$l.tmp/usr/local/bin/"
		printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\n' >"$l.tmp/etc/crictl.yaml"
		mv "$l.tmp" "$l"
	fi
	LAYER_CONTAINERD22=$l

	l=$CACHE/layers/crio-1.34-$CRIO_VERSION-r$LAYER_REV
	if [ ! -d "$l" ]; then
		rm -rf "$l.tmp"
		mkdir -p "$l.tmp/usr/local/bin" "$l.tmp/etc/systemd/system/multi-user.target.wants" \
			"$l.tmp/etc/crio/crio.conf.d" "$l.tmp/etc/containers"
		cp "$CACHE/crio-$CRIO_VERSION/crio" "$CACHE/crio-$CRIO_VERSION/pinns" \
			"$CACHE/crictl-$CRICTL_VERSION/crictl" "$l.tmp/usr/local/bin/"
		printf 'runtime-endpoint: unix:///var/run/crio/crio.sock\n' >"$l.tmp/etc/crictl.yaml"
		# A CRI-O node runs no containerd.
		ln -s /dev/null "$l.tmp/etc/systemd/system/containerd.service"
		cat >"$l.tmp/etc/systemd/system/crio.service" <<'EOF'
[Unit]
Description=Container Runtime Interface for OCI (CRI-O)
Documentation=https://github.com/cri-o/cri-o
Wants=network-online.target
Before=kubelet.service
After=network-online.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/crio
Environment=GOTRACEBACK=crash
# nftables/iptables host-port rules are not permitted inside systemd-nspawn.
ExecStart=/usr/local/bin/crio --disable-hostport-mapping $CRIO_CONFIG_OPTIONS $CRIO_RUNTIME_OPTIONS $CRIO_STORAGE_OPTIONS $CRIO_NETWORK_OPTIONS $CRIO_METRICS_OPTIONS
ExecReload=/bin/kill -s HUP $MAINPID
TasksMax=infinity
LimitNOFILE=1048576
LimitNPROC=1048576
LimitCORE=infinity
OOMScoreAdjust=-999
TimeoutStartSec=0
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
Alias=cri-o.service
EOF
		ln -s /etc/systemd/system/crio.service "$l.tmp/etc/systemd/system/multi-user.target.wants/crio.service"
		ln -s /etc/systemd/system/crio.service "$l.tmp/etc/systemd/system/cri-o.service"
		# What CRI-O's own packages ship as the base drop-in: crun default, runc available.
		cat >"$l.tmp/etc/crio/crio.conf.d/10-crio.conf" <<'EOF'
[crio.image]
signature_policy = "/etc/crio/policy.json"

[crio.runtime]
default_runtime = "crun"

[crio.runtime.runtimes.crun]
runtime_path = "/usr/bin/crun"
runtime_root = "/run/crun"
monitor_path = "/usr/bin/conmon"
allowed_annotations = [
    "io.containers.trace-syscall",
]

[crio.runtime.runtimes.runc]
runtime_path = "/usr/sbin/runc"
runtime_root = "/run/runc"
monitor_path = "/usr/bin/conmon"
EOF
		printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$l.tmp/etc/crio/policy.json"
		mv "$l.tmp" "$l"
	fi
	LAYER_CRIO=$l
}

# The kubelet layer goes between a flavour layer and a cluster node's own files: kubelet
# and kube-proxy, Debian's CNI plugins, and the units that run them. Everything that
# differs per node (names, addresses, tokens, the runtime's socket) is written by
# internal/testing/testbed when the node boots.
build_kube_layer() {
	local id l deb
	id=$( (echo "$KUBE_LAYER_REV" && cd "$KUBE_LAYER_SRC" && cat kubelet.service kube-proxy.service testbed-node.service testbed-init testbed-node-setup) | sha256sum | cut -c1-12)
	l=$CACHE/layers/kube-$K8S_VERSION-$id
	if [ ! -d "$l" ]; then
		rm -rf "$l.tmp" && mkdir -p "$l.tmp/usr/local/bin" "$l.tmp/usr/local/sbin" \
			"$l.tmp/etc/systemd/system/multi-user.target.wants" "$CACHE/debs"
		cp "$OUT_kube/kubelet" "$OUT_kube/kube-proxy" "$l.tmp/usr/local/bin/"
		(cd "$CACHE/debs" && apt-get download containernetworking-plugins) >"$CACHE/logs/cni-download.log" 2>&1 ||
			die "apt-get download containernetworking-plugins failed, log: $CACHE/logs/cni-download.log"
		deb=$(ls -t "$CACHE"/debs/containernetworking-plugins_*.deb | head -n 1)
		# Only the plugins: the package's own lib/ would hide the root's lib -> usr/lib.
		rm -rf "$l.deb" && dpkg-deb -x "$deb" "$l.deb"
		mkdir -p "$l.tmp/usr/lib" && mv "$l.deb/usr/lib/cni" "$l.tmp/usr/lib/cni" && rm -rf "$l.deb"
		local unit
		for unit in kubelet kube-proxy testbed-node; do
			cp "$KUBE_LAYER_SRC/$unit.service" "$l.tmp/etc/systemd/system/"
			ln -s "/etc/systemd/system/$unit.service" "$l.tmp/etc/systemd/system/multi-user.target.wants/$unit.service"
		done
		install -m 0755 "$KUBE_LAYER_SRC/testbed-init" "$KUBE_LAYER_SRC/testbed-node-setup" "$l.tmp/usr/local/sbin/"
		# Earlier recipes' layers are never used again.
		find "$CACHE/layers" -maxdepth 1 -name 'kube-*' ! -name "$(basename "$l").tmp" -exec rm -rf {} +
		mv "$l.tmp" "$l"
	fi
	LAYER_KUBE=$l
}

# exec_layer NAME BINARY: a tiny overlay layer holding BINARY at /.testbed/bin and the
# libraries it links, so internal/testing/testbed can run it chrooted into any test host root
# (ContainerdConfigDump) whatever that root contains.
exec_layer() {
	local name=$1 bin=$2 l=$CACHE/exec/$1-r$LAYER_REV lib
	if [ ! -d "$l" ]; then
		rm -rf "$l.tmp" && mkdir -p "$l.tmp/.testbed/bin" "$l.tmp/.testbed/lib"
		cp "$bin" "$l.tmp/.testbed/bin/"
		for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*'); do
			cp -L "$lib" "$l.tmp/.testbed/lib/"
		done
		mv "$l.tmp" "$l"
	fi
	echo "$l"
}

write_manifest() {
	local tmp=$MANIFEST.tmp
	cat >"$tmp" <<EOF
# written by hack/testbed.sh provision; read by internal/testing/testbed
ETCD=$(command -v etcd)
KUBE_APISERVER=$CACHE/kubernetes-$K8S_VERSION/kube-apiserver
KUBE_CONTROLLER_MANAGER=$OUT_kube/kube-controller-manager
KUBE_SCHEDULER=$OUT_kube/kube-scheduler
KUBECTL=$OUT_kube/kubectl
KUBE_LAYER=$LAYER_KUBE
KUBERNETES_VERSION=$K8S_VERSION
ROOTFS=$ROOTFS_DIR
LAYER_containerd-1.6=$LAYER_CONTAINERD16
LAYER_containerd-2.2=$LAYER_CONTAINERD22
LAYER_crio-1.34=$LAYER_CRIO
EXEC_containerd-1.6=$(exec_layer containerd-1.6 "$ROOTFS_DIR/usr/bin/containerd")
EXEC_containerd-2.2=$(exec_layer "containerd-2.2-$CONTAINERD_VERSION" "$CACHE/containerd-$CONTAINERD_VERSION/containerd")
CRIO=$CACHE/crio-$CRIO_VERSION/crio
CRICTL=$CACHE/crictl-$CRICTL_VERSION/crictl
STANDIN_SHIM=$STANDIN_SHIM
EOF
	mv "$tmp" "$MANIFEST"
}

provision() {
	need_root
	mkdir -p "$CACHE/logs" "$CACHE/build" "$CACHE/rootfs" "$CACHE/layers" "$CACHE/exec"
	log "cache: $CACHE"
	command -v go >/dev/null || die "go is not on PATH"
	install_host_packages

	# The node root is network and disk bound, the builds CPU bound: overlap them.
	local rootfs_pid=
	if [ ! -f "$ROOTFS_TAR" ] || [ ! -d "$ROOTFS_DIR/usr" ]; then
		build_rootfs &
		rootfs_pid=$!
	fi
	# Go builds one after another: each go build already uses every core. The downloads
	# of the later ones overlap the first compile.
	built_kube || prepare kube || {
		tail -n 40 "$CACHE/logs/kube.prepare.log" >&2
		die "kube-apiserver: go get failed, log: $CACHE/logs/kube.prepare.log"
	}
	local prefetch_pid=
	if ! built_containerd || ! built_crio || ! built_crictl; then
		# Failures here are reported by build, which retries the step.
		{
			built_containerd || prepare containerd || true
			built_crio || prepare crio || true
			built_crictl || prepare crictl || true
		} &
		prefetch_pid=$!
	fi
	build kube "kube-apiserver $K8S_VERSION"
	[ -z "$prefetch_pid" ] || wait "$prefetch_pid" || true
	build containerd "containerd $CONTAINERD_VERSION"
	build_standin_shim
	build crio "cri-o $CRIO_VERSION"
	build crictl "crictl $CRICTL_VERSION"
	if [ -n "$rootfs_pid" ]; then
		log "waiting for the node root"
		wait "$rootfs_pid" || die "node root failed"
	fi
	build_rootfs
	build_layers
	build_kube_layer
	write_manifest
	log "provisioned in $(($(date +%s) - START))s; manifest: $MANIFEST"
}

case ${1:-} in
provision) provision ;;
rootfs)
	# Only the node root (debugging the debootstrap step).
	need_root
	mkdir -p "$CACHE/logs" "$CACHE/rootfs"
	build_rootfs
	;;
env) cat "$MANIFEST" ;;
clean)
	need_root
	rm -rf "$CACHE"
	;;
*)
	echo "usage: $0 provision|env|clean" >&2
	exit 2
	;;
esac
