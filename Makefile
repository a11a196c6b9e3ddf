# make test: install the test tools (root, Debian), vet, and run every test.
GO ?= go

.PHONY: test test-deps vet sandbox bench

test: test-deps vet
	$(GO) test -count=1 -timeout 30m ./...

test-deps:
	./scripts/install-test-deps

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt: files above need gofmt -w" >&2; exit 1)

# make sandbox: a whole portal on loopback (see README.md).
sandbox:
	$(GO) run ./cmd/qapi-sandbox

# make bench: the load tool's chain, direct and 60/s runs (docs/benchmarks.md).
bench:
	$(GO) run ./cmd/qapi-bench
