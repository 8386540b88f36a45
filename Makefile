# kata-deploy developer entry points. See README.md.
GO ?= go
GOFLAGS ?=

.PHONY: test unit provision bench fuzz vet

# Everything the tests need, then every test (unit, real-runtime and
# end-to-end). Safe to run on a fresh Debian 12 machine as root.
test: provision vet
	$(GO) test $(GOFLAGS) -count=1 -timeout 30m ./...

# Tests that need no root and no testbed (the rest skip with one line).
unit:
	$(GO) test $(GOFLAGS) ./...

provision:
	hack/testbed.sh provision

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./containerd ./artifacts

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzInstallRevert -fuzztime 60s ./containerd
