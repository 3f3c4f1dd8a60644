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
# The EC2 API client tests (HTTPS, limits and metrics too) once more, on
# the PostgreSQL store (each test starts a private server); the election's
# metrics exist only there. The store's own tests run on both stores above.
FLOWGATE_TEST_STORE=postgres run_tests -p flowgate --test clients --test durability --test https --test limits --test metrics
cargo test --workspace --doc

# Nothing may be left behind. Lab namespaces are named fgt-<pid>-<n>,
# their daemons run from flowgate-testbed/fgt-<pid>-<n>, private PostgreSQL
# servers from flowgate-pg/pg-<pid>-<n>: <pid> is the test process that
# made them. Every test process of this run has exited by now, so what
# belongs to a live process is another run's on the same machine, not a
# leftover.
owner_gone() { ! kill -0 "$1" 2>/dev/null; }
leftovers=""
for ns in $(ip netns list | awk '$1 ~ /^fgt-[0-9]+-/ {print $1}'); do
  pid=${ns#fgt-}; pid=${pid%%-*}
  if owner_gone "$pid"; then leftovers="$leftovers $ns"; fi
done
if [ -n "$leftovers" ]; then
  echo "test: namespaces left behind by the tests:" >&2
  printf '%s\n' $leftovers >&2
  cargo run -q -p testbed --bin testbed-sweep || true
  exit 1
fi
# The pids of processes whose command line names a dead owner's directory
# matching the pattern (the owner's pid follows the prefix).
orphans() {
  local prefix=$1
  { pgrep -af "$prefix[0-9]+-" || true; } | while read -r pid args; do
    owner=$(printf '%s\n' "$args" | grep -oE "$prefix[0-9]+-" | head -1)
    owner=${owner#"$prefix"}; owner=${owner%-}
    if owner_gone "$owner"; then echo "$pid"; fi
  done
}
daemons=$(orphans 'flowgate-testbed/fgt-')
if [ -n "$daemons" ]; then
  echo "test: processes left behind by the tests:" >&2
  ps -o pid,args -p $daemons >&2 || true
  exit 1
fi
servers="$(orphans 'flowgate-pg/pg-') $(orphans 'flowgate-pg/build-')"
if [ -n "${servers// /}" ]; then
  echo "test: PostgreSQL servers left behind by the tests:" >&2
  ps -o pid,args -p $servers >&2 || true
  exit 1
fi
echo "test: all tests passed; no namespaces or daemons left behind"
