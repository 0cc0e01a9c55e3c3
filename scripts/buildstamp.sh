#!/bin/sh
# Prints the build stamp that pairs containerd-shim-wazero-v1 with the runner binary built beside it
# (engine.BuildStamp, see RATIONALE.md): a hash of the Go version and of every Go source, go.mod and
# go.sum of the repository. Two binaries with the same stamp were built from the same sources.
# Usage (from the repository root): scripts/buildstamp.sh [GO]
set -eu
GO=${1:-go}
{
	"$GO" version
	find . \( -name '.?*' -o -path ./bin -o -path ./testdata/build \) -prune -o \
		-type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print | LC_ALL=C sort | xargs sha256sum
} | sha256sum | cut -c1-16
