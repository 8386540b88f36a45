# syntax=docker/dockerfile:1
#
# The kata-deploy image: three static binaries and a Kata release payload on
# an otherwise empty base. hack/build-image.sh builds the same image without
# a container engine (hack/imagebuild; its test compares the final stage
# below with what it writes).
#
#   docker build --build-arg KATA_SHA256=<sha256 of the release tarball> \
#     -t quay.io/kata-containers/kata-deploy-go:latest .
#
# Layout: /usr/local/bin/kata-{labeler,installer,cleanup};
# /opt/kata-artifacts/opt/kata/... (the kata-static tree, KATA_PAYLOAD);
# /etc/passwd, /etc/group, /tmp. Entrypoint kata-installer install; the
# manifests set each container's command.

ARG GO_VERSION=1.26
# The Kata release the payload comes from. Bumping it means setting
# KATA_SHA256 to the sha256 of kata-static-<version>-amd64.tar.zst, taken
# from the release and checked by hand: the build refuses to run without one.
ARG KATA_VERSION=3.32.0
ARG KATA_SHA256=
# kata-deploy's own version, recorded as a label.
ARG VERSION=dev

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (CGO off), no local paths in the binaries (-trimpath).
RUN CGO_ENABLED=0 GOOS=linux GOARCH=amd64 \
    go build -trimpath -ldflags="-s -w" -o /out/ \
      ./cmd/kata-labeler ./cmd/kata-installer ./cmd/kata-cleanup
# The only base files: names for uid 0 and 65532 (the labeler's user), and
# /tmp. Same bytes as hack/imagebuild's baseFiles.
RUN mkdir -p /rootfs/etc /rootfs/tmp && chmod 1777 /rootfs/tmp \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd

FROM debian:bookworm-slim AS payload
ARG KATA_VERSION
ARG KATA_SHA256
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl zstd \
 && rm -rf /var/lib/apt/lists/*
RUN set -eu; \
    test -n "${KATA_SHA256}" || { echo "KATA_SHA256 is not set: pass the sha256 of kata-static-${KATA_VERSION}-amd64.tar.zst with --build-arg" >&2; exit 1; }; \
    curl -fsSL -o /kata-static.tar.zst \
      "https://github.com/kata-containers/kata-containers/releases/download/${KATA_VERSION}/kata-static-${KATA_VERSION}-amd64.tar.zst"; \
    echo "${KATA_SHA256}  /kata-static.tar.zst" | sha256sum -c -; \
    mkdir -p /opt/kata-artifacts; \
    tar --zstd -xf /kata-static.tar.zst -C /opt/kata-artifacts --numeric-owner; \
    test -x /opt/kata-artifacts/opt/kata/bin/containerd-shim-kata-v2

# No distribution at all: the binaries are static and need no shell, libc,
# CA bundle (the API server's CA comes with the service account) or tzdata.
# The installer cannot run as non-root (systemd's private socket is
# root-only and the host files it edits are root's), so the image's user is
# 0; the labeler's DaemonSet runs it as 65532.
FROM scratch
ARG KATA_VERSION
ARG VERSION
COPY --from=build /rootfs/ /
COPY --from=payload /opt/kata-artifacts/ /opt/kata-artifacts/
COPY --from=build /out/kata-labeler /out/kata-installer /out/kata-cleanup /usr/local/bin/
ENV PATH=/usr/local/bin KATA_PAYLOAD=/opt/kata-artifacts KATA_HOST_ROOT=/host
LABEL org.opencontainers.image.title="kata-deploy" \
      org.opencontainers.image.description="Installs Kata Containers onto Kubernetes nodes" \
      org.opencontainers.image.source="https://github.com/kata-deploy/kata-deploy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      io.katacontainers.version="${KATA_VERSION}"
USER 0:0
WORKDIR /
ENTRYPOINT ["/usr/local/bin/kata-installer"]
CMD ["install"]
