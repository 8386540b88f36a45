#!/usr/bin/env bash
# hack/bench-nodelabel.sh: reproduce the figures in docs/nodelabel-performance.md.
#
#   hack/bench-nodelabel.sh [NODES]    default 1000
#
# Needs the testbed (hack/testbed.sh provision) and root. Each benchmark runs once
# (-benchtime 1x): they measure a scenario, not a loop.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-1000}
go test ./nodelabel -run '^$' -bench 'Labelers$' -benchtime 1x -timeout 20m -bench-nodes "$nodes" -v 2>&1 |
	grep -E 'bench_test|Benchmark|^(ok|FAIL|PASS)'
go test ./nodelabel -run '^$' -bench 'Labelers$' -benchtime 1x -timeout 20m -bench-nodes "$nodes" -bench-shared-transport -v 2>&1 |
	grep -E 'bench_test|Benchmark|^(ok|FAIL|PASS)'
go test ./nodelabel -run '^$' -bench 'IdleLabelerRSS$' -benchtime 1x -timeout 10m -v 2>&1 |
	grep -E 'bench_test|Benchmark|^(ok|FAIL|PASS)'
