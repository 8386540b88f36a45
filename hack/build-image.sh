#!/usr/bin/env bash
# Builds the kata-deploy image without a container engine: the three static
# binaries (cross-compiled per architecture), then hack/imagebuild, which
# writes the same image as the Dockerfile as an OCI image layout tarball
# and/or pushes it to a registry.
#
#   PAYLOAD=/path/to/tree hack/build-image.sh    # a directory holding opt/kata/...
#   KATA_TARBALL=kata-static-3.32.0-amd64.tar.zst hack/build-image.sh
#   KATA_SHA256=<sha256> hack/build-image.sh     # download the Dockerfile's Kata release
#   ARCHES=amd64,arm64 PAYLOAD=_output/payload-{arch} PUSH=registry.example.com/kata-deploy:v1 \
#       hack/build-image.sh                      # an image index, pushed (docker login's credentials)
#
# Then, on a node: ctr -n k8s.io images import _output/kata-deploy-image.tar
#
# Environment: OUT (default _output/kata-deploy-image.tar, single
# architecture only), REF (image reference), BIN_DIR (use binaries built
# elsewhere), KATA_SHA256 (required to download the release: the same value
# as the Dockerfile's build argument), KATA_VERSION (the payload's Kata
# release, for the io.katacontainers.version label; taken from a
# kata-static-<version>-<arch> tarball name when not given), ARCHES
# (default amd64; "{arch}" in PAYLOAD, KATA_TARBALL and BIN_DIR stands for
# each), PUSH (registry reference), VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."

KATA_RELEASE=$(sed -n 's/^ARG KATA_VERSION=//p' Dockerfile)
KATA_SHA256=${KATA_SHA256:-$(sed -n 's/^ARG KATA_SHA256=//p' Dockerfile)}
ARCHES=${ARCHES:-amd64}
REF=${REF:-quay.io/kata-containers/kata-deploy-go:latest}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
REVISION=$(git rev-parse HEAD 2>/dev/null || true)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export CGO_ENABLED=0

if [[ "$ARCHES" == *,* ]]; then
	OUT=${OUT:-}
	for v in PAYLOAD KATA_TARBALL; do
		if [[ -n "${!v:-}" && "${!v}" != *"{arch}"* ]]; then
			echo "$v must name each architecture's payload with {arch} when ARCHES has more than one (ARCHES=$ARCHES)" >&2
			exit 2
		fi
	done
else
	OUT=${OUT:-_output/kata-deploy-image.tar}
fi
if [[ -z "${PAYLOAD:-}${KATA_TARBALL:-}${KATA_SHA256}" ]]; then
	cat >&2 <<MSG
make image needs the Kata payload to put in the image. Point to one:
  make image PAYLOAD=/path/to/kata-static-tree      (a directory holding opt/kata/...)
  make image KATA_TARBALL=kata-static-${KATA_RELEASE}-amd64.tar.zst KATA_VERSION=${KATA_RELEASE}
or have it downloaded from GitHub and checked (the Dockerfile's release, ${KATA_RELEASE}):
  make image KATA_SHA256=<sha256 of kata-static-${KATA_RELEASE}-amd64.tar.zst from the release page>
MSG
	exit 2
fi
mkdir -p _output
[[ -n "$OUT" ]] && mkdir -p "$(dirname "$OUT")"

label=${KATA_VERSION:-}
IFS=, read -r -a arches <<<"$ARCHES"
for arch in "${arches[@]}"; do
	bin=${BIN_DIR:-_output/bin/{arch}}
	bin=${bin//\{arch\}/$arch}
	if [[ -z "${BIN_DIR:-}" ]]; then
		mkdir -p "$bin"
		echo "building kata-labeler, kata-installer, kata-cleanup for linux/$arch (static, -trimpath)"
		GOOS=linux GOARCH=$arch go build -trimpath -ldflags="-s -w" -o "$bin/" \
			./cmd/kata-labeler ./cmd/kata-installer ./cmd/kata-cleanup
	fi
	if [[ -z "${PAYLOAD:-}" ]]; then
		tarball=${KATA_TARBALL:-}
		tarball=${tarball//\{arch\}/$arch}
		if [[ -z "$tarball" ]]; then
			tarball=_output/kata-static-${KATA_RELEASE}-${arch}.tar.zst
			if [[ ! -f "$tarball" ]]; then
				echo "downloading Kata ${KATA_RELEASE} for $arch"
				curl -fsSL -o "$tarball.part" \
					"https://github.com/kata-containers/kata-containers/releases/download/${KATA_RELEASE}/kata-static-${KATA_RELEASE}-${arch}.tar.zst"
				mv "$tarball.part" "$tarball"
			fi
			# The one pin is the Dockerfile's, for amd64; other
			# architectures' sums come as KATA_SHA256_<arch>.
			sum_var=KATA_SHA256_${arch}
			sum=${!sum_var:-}
			[[ "$arch" == amd64 ]] && sum=${sum:-$KATA_SHA256}
			if [[ -z "$sum" ]]; then
				echo "$sum_var is not set: the sha256 of $(basename "$tarball") is needed to trust it" >&2
				exit 2
			fi
			echo "${sum}  ${tarball}" | sha256sum -c -
			label=${label:-$KATA_RELEASE}
		fi
		if [[ -z "$label" && "$(basename "$tarball")" =~ ^kata-static-(.+)-${arch}\.tar ]]; then
			label=${BASH_REMATCH[1]}
		fi
		payload=_output/payload/$arch
		if [[ "$(cat "$payload.source" 2>/dev/null)" != "$(basename "$tarball") $(stat -c %s "$tarball")" ]]; then
			rm -rf "$payload" "$payload.source" && mkdir -p "$payload"
			tar -xf "$tarball" -C "$payload" --numeric-owner
			echo "$(basename "$tarball") $(stat -c %s "$tarball")" >"$payload.source"
		fi
	fi
done

if [[ -z "${PAYLOAD:-}" ]]; then
	PAYLOAD=_output/payload/{arch}
fi
args=(-arch "$ARCHES" -bin-dir "${BIN_DIR:-_output/bin/{arch}}" -payload "$PAYLOAD" -ref "$REF"
	-kata-version "$label" -version "$VERSION" -revision "$REVISION")
[[ -n "$OUT" ]] && args+=(-out "$OUT")
[[ -n "${PUSH:-}" ]] && args+=(-push "$PUSH")
go run ./hack/imagebuild "${args[@]}"
if [[ -n "$OUT" ]]; then ls -l "$OUT"; fi
