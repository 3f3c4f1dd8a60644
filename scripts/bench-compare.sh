#!/usr/bin/env bash
# flowgate side by side with OVN and moto_server, and at scale, in one run
# (flowgate-bench, crates/bench): the same EC2-like policy built in OVN
# (Debian's ovn-central/ovn-host, userspace, one chassis in a private
# namespace) and in flowgate at N = 100 and 1000 instances, the EC2 API
# against moto_server, then the compiler and controller with 100, 300 and
# 1,000 emulated hypervisors (50 instances each). Prints Markdown tables
# (see docs/benchmarks.md, "flowgate against OVN and moto" and "At scale").
# Needs root. Usage: ./scripts/bench-compare.sh [compare options] [-- scale options]
#   e.g. ./scripts/bench-compare.sh --sizes 100 --no-api -- --hypervisors 100
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
cargo build --release -q -p flowgate -p bench -p switch-emulator
compare=()
scale=()
target=compare
for arg in "$@"; do
  if [ "$arg" = "--" ]; then target=scale; continue; fi
  if [ "$target" = compare ]; then compare+=("$arg"); else scale+=("$arg"); fi
done
echo "# flowgate-bench, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
target/release/flowgate-bench compare "${compare[@]}"
echo
echo "At scale (emulated hypervisors), load average $(cut -d' ' -f1-3 /proc/loadavg):"
echo
target/release/flowgate-bench scale "${scale[@]}"
