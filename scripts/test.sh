#!/usr/bin/env bash
# Runs every test (the README's test command). Pass -short to skip the slow accuracy tests.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -count=1 -timeout 30m "$@" ./...
