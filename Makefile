# kata-deploy developer entry points. See README.md.
GO ?= go
GOFLAGS ?=

.PHONY: test demo unit provision image bench fuzz vet manifests

# The node runtime the demo runs on: containerd-1.6, containerd-2.2 or crio-1.34.
FLAVOUR ?= containerd-1.6

# Everything the tests need, then every test (unit, real-runtime and
# end-to-end). Safe to run on a fresh Debian 12 machine as root.
test: provision vet
	$(GO) test $(GOFLAGS) -count=1 -timeout 30m ./...

# The whole lifecycle on a local cluster: a real kube-apiserver and a
# systemd-booted node running $(FLAVOUR); the real kata-labeler,
# kata-installer and kata-cleanup label, plan, install, verify, uninstall
# and clean up, printing each step.
demo: provision
	$(GO) test $(GOFLAGS) -count=1 -v -run 'TestQuickStart/$(FLAVOUR)$$' ./e2e

# Tests that need no root and no testbed (the rest skip with one line).
unit:
	$(GO) test $(GOFLAGS) ./...

provision:
	hack/testbed.sh provision

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# The image as an OCI tarball, without a Docker engine (see docs/manifests.md).
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
