# Myelin builds with Go 1.27 (mautrix's federation packages need encoding/json/v2).
# The go command fetches that toolchain from the module proxy on first use.
export GOTOOLCHAIN := go1.27.3

.PHONY: run build test lint bench

## run: start the server on the embedded SQLite database in ./data
run:
	MYELIN_SERVER_NAME="$${MYELIN_SERVER_NAME:-localhost}" go run ./cmd/myelin serve

## build: build both binaries into ./bin
build:
	CGO_ENABLED=0 go build -o bin/ ./cmd/...

## test: the whole suite on SQLite and PostgreSQL (the command CI runs)
test:
	./scripts/test.sh

## lint: gofmt, go vet and staticcheck
lint:
	./scripts/lint.sh

## bench: Go benchmarks for the hot paths
bench:
	go test -run '^$$' -bench . -benchmem ./...
