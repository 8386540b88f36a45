# kata-deploy developer entry points. See README.md.
GO ?= go
GOFLAGS ?=

.PHONY: test demo unit prereqs provision image bench fuzz vet manifests

# The cluster the demo runs on: one node of containerd-1.6, containerd-2.2 or
# crio-1.34, several (comma-separated), or all (one node of each).
FLAVOUR ?= containerd-1.6

# Everything the tests need, then every test (unit, real-runtime and
# end-to-end). Safe to run on a fresh Debian 12 machine as root.
test: prereqs provision vet
	$(GO) test $(GOFLAGS) -count=1 -timeout 60m ./...

# The README's quick start on a local cluster: a real control plane and
# systemd-booted nodes running $(FLAVOUR) with a kubelet; the DaemonSets from
# the image `make image` builds, applied and removed with the README's own
# kubectl commands, printing each step and its figures.
demo: prereqs provision
	KATA_E2E_CLUSTER=$(FLAVOUR) $(GO) test $(GOFLAGS) -count=1 -v -run 'TestClusterQuickStart$$' ./e2e

# Tests that need no root and no testbed (the rest skip with one line).
unit:
	$(GO) test $(GOFLAGS) ./...

# Root, Go at go.mod's version, git, cgroups and overlayfs, and (until
# provisioned) network and disk: named before anything starts.
prereqs:
	hack/prereqs.sh

provision:
	hack/testbed.sh provision

# staticcheck, pinned. Built once (only when missing) into the tool cache
# beside the testbed's, keyed by its version and Go's, since a staticcheck
# built by an older Go cannot read newer code. The cold build (download and
# compile) took 2.5 min on the 2-core machine under load (42 s of CPU);
# later runs reuse the binary, and staticcheck caches its analysis.
STATICCHECK_VERSION := v0.8.2

vet:
	@command -v git >/dev/null || { echo "make vet needs git: its gofmt check covers the files git tracks"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	@set -e; \
	dir="$${KATA_DEPLOY_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/kata-deploy}/tools/staticcheck-$(STATICCHECK_VERSION)-$$($(GO) env GOVERSION)"; \
	if [ ! -x "$$dir/staticcheck" ]; then \
		echo "building staticcheck $(STATICCHECK_VERSION) into $$dir (once; about 2.5 min)"; \
		rm -rf "$$dir.tmp" && mkdir -p "$$dir.tmp"; \
		GOBIN="$$dir.tmp" GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
		rm -rf "$$dir" && mv "$$dir.tmp" "$$dir"; \
	fi; \
	echo "staticcheck ./..."; \
	"$$dir/staticcheck" ./...

# The image without a Docker engine (README "Getting the image"): an OCI
# tarball for amd64 by default; ARCHES=amd64,arm64 builds an index; PUSH=<ref>
# pushes to a registry. Name the payload with PAYLOAD=<dir> or
# KATA_TARBALL=<kata-static tarball>, or KATA_SHA256=<sum> to download it.
image:
	hack/build-image.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./containerd ./artifacts

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzInstallRevert -fuzztime 60s ./containerd

# deploy/*.yaml from the Helm chart's default render (deploy/helm/kata-deploy);
# `go test ./deploy/helm` fails when they differ.
manifests:
	$(GO) test $(GOFLAGS) -count=1 -run '^TestPlainManifests$$' ./deploy/helm -update
