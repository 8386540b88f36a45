#!/usr/bin/env bash
# Builds the kata-deploy image without a container engine: the three static
# binaries, then hack/imagebuild, which writes the same image as the
# Dockerfile as an OCI image layout tarball.
#
#   hack/build-image.sh                          # payload: the pinned Kata release
#   PAYLOAD=/path/to/tree hack/build-image.sh    # a directory holding opt/kata/...
#   KATA_TARBALL=kata-static-X-amd64.tar.zst hack/build-image.sh
#
# Then, on a node: ctr -n k8s.io images import _output/kata-deploy-image.tar
#
# Environment: OUT (default _output/kata-deploy-image.tar), REF (image
# reference), BIN_DIR (use binaries built elsewhere instead of building),
# KATA_SHA256 (required when the release is downloaded or KATA_TARBALL is
# given: the same value as the Dockerfile's build argument), VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."

# One pin for both builds: the Dockerfile's. A PAYLOAD given by hand is
# labelled with KATA_VERSION only if that is given too.
KATA_VERSION_LABEL=${KATA_VERSION:-}
KATA_VERSION=${KATA_VERSION:-$(sed -n 's/^ARG KATA_VERSION=//p' Dockerfile)}
KATA_SHA256=${KATA_SHA256:-$(sed -n 's/^ARG KATA_SHA256=//p' Dockerfile)}
OUT=${OUT:-_output/kata-deploy-image.tar}
REF=${REF:-quay.io/kata-containers/kata-deploy-go:latest}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
REVISION=$(git rev-parse HEAD 2>/dev/null || true)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64

mkdir -p _output "$(dirname "$OUT")"

if [[ -z "${BIN_DIR:-}" ]]; then
	BIN_DIR=_output/bin
	mkdir -p "$BIN_DIR"
	echo "building kata-labeler, kata-installer, kata-cleanup (static, -trimpath)"
	go build -trimpath -ldflags="-s -w" -o "$BIN_DIR/" \
		./cmd/kata-labeler ./cmd/kata-installer ./cmd/kata-cleanup
fi

if [[ -z "${PAYLOAD:-}" ]]; then
	if [[ -z "$KATA_SHA256" ]]; then
		echo "KATA_SHA256 is not set: the sha256 of kata-static-${KATA_VERSION}-amd64.tar.zst is needed to trust it (or set PAYLOAD to a directory)" >&2
		exit 1
	fi
	if [[ -z "${KATA_TARBALL:-}" ]]; then
		KATA_TARBALL=_output/kata-static-${KATA_VERSION}-amd64.tar.zst
		if [[ ! -f "$KATA_TARBALL" ]]; then
			echo "downloading Kata ${KATA_VERSION}"
			curl -fsSL -o "$KATA_TARBALL.part" \
				"https://github.com/kata-containers/kata-containers/releases/download/${KATA_VERSION}/kata-static-${KATA_VERSION}-amd64.tar.zst"
			mv "$KATA_TARBALL.part" "$KATA_TARBALL"
		fi
	fi
	echo "${KATA_SHA256}  ${KATA_TARBALL}" | sha256sum -c -
	KATA_VERSION_LABEL=$KATA_VERSION
	PAYLOAD=_output/payload-${KATA_VERSION}
	if [[ ! -x "$PAYLOAD/opt/kata/bin/containerd-shim-kata-v2" ]]; then
		rm -rf "$PAYLOAD" && mkdir -p "$PAYLOAD"
		tar --zstd -xf "$KATA_TARBALL" -C "$PAYLOAD" --numeric-owner
	fi
fi

go run ./hack/imagebuild -bin-dir "$BIN_DIR" -payload "$PAYLOAD" -out "$OUT" -ref "$REF" \
	-kata-version "$KATA_VERSION_LABEL" -version "$VERSION" -revision "$REVISION"
ls -l "$OUT"
