#!/usr/bin/env bash
# Runs the whole test suite. PostgreSQL-backed tests need a server: this script
# starts the local cluster if it is installed but stopped. Set MYELIN_TEST_POSTGRES
# to point the tests at another server.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=go1.27.3
export MYELIN_TEST_POSTGRES="${MYELIN_TEST_POSTGRES:-postgres://root@127.0.0.1:5432/postgres?sslmode=disable}"
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi
# goolm selects mautrix's pure-Go olm, which the end-to-end encryption tests
# (internal/homeserver/e2ee_test.go) drive; without it they are skipped.
go test -count=1 -timeout 20m -tags goolm "$@" ./...
