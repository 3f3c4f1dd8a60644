#!/usr/bin/env bash
# Benchmarks flowgate's EC2 API against moto_server, side by side in one run:
# DescribeAddresses, DescribeSecurityGroups (100 groups x 5 rules) and
# AllocateAddress+ReleaseAddress pairs, SigV4-signed, 1 and 16 clients.
# Prints a Markdown table (see docs/benchmarks.md, section "EC2 API").
# Usage: ./scripts/bench-ec2api.sh [--seconds N] [--clients 1,16] [--no-moto]
# With --postgres it compares flowgate's stores instead: SQLite, PostgreSQL
# with one, two and three nodes (docs/benchmarks.md, section "PostgreSQL store").
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
cargo build --release -q -p flowgate -p ec2bench
exec target/release/ec2bench --flowgate target/release/flowgate --moto .venv/bin/moto_server "$@"
