#!/usr/bin/env bash
# Runs every test of flowgate: unit, property, and the integration tests
# that drive a real Open vSwitch and network namespaces (so it needs root).
# Afterwards it checks that the tests left no namespace or daemon behind.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

if [ "$(id -u)" -ne 0 ]; then
  echo "test: the integration tests create network namespaces and need root" >&2
  exit 1
fi

run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "$@"
  else
    cargo test --no-fail-fast "$@"
  fi
}
run_tests --workspace
# The EC2 API client tests once more, on the PostgreSQL store (each test
# starts a private server). The store's own tests run on both stores above.
FLOWGATE_TEST_STORE=postgres run_tests -p flowgate --test clients --test durability
cargo test --workspace --doc

# Nothing may be left behind: lab namespaces are named fgt-<pid>-<n>.
leftovers=$(ip netns list | awk '$1 ~ /^fgt-/ {print $1}')
if [ -n "$leftovers" ]; then
  echo "test: namespaces left behind by the tests:" >&2
  echo "$leftovers" >&2
  cargo run -q -p testbed --bin testbed-sweep || true
  exit 1
fi
daemons=$(pgrep -f 'flowgate-testbed/fgt-' || true)
if [ -n "$daemons" ]; then
  echo "test: processes left behind by the tests:" >&2
  ps -o pid,args -p $daemons >&2 || true
  exit 1
fi
# Private PostgreSQL servers live in $TMPDIR/flowgate-pg/pg-<pid>-<n>.
servers=$(pgrep -f 'flowgate-pg/(pg|build)-' || true)
if [ -n "$servers" ]; then
  echo "test: PostgreSQL servers left behind by the tests:" >&2
  ps -o pid,args -p $servers >&2 || true
  exit 1
fi
echo "test: all tests passed; no namespaces or daemons left behind"
