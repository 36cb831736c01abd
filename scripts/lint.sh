#!/usr/bin/env bash
# gofmt, go vet and staticcheck over the whole tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=go1.27.3
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
go vet -tags goolm ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -tags goolm ./...
