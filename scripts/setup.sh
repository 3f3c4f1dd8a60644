#!/usr/bin/env bash
# Installs everything flowgate and its tests need on a Debian 12 machine.
# Idempotent: packages already present are not touched, so a second run
# takes a second. Needs root (or sudo) for apt.
set -euo pipefail

# Debian packages: Open vSwitch for the data plane and the test beds, the
# tools the test bed drives (ip, ethtool, ping, nc, kill/pgrep, unshare),
# tcpdump and iperf3 for packet-level checks, python3-venv for the AWS
# clients, and PostgreSQL for the PostgreSQL store's tests and benchmark
# (they start private servers of their own with its binaries, as the
# unprivileged postgres user: crates/pgtest; no system-wide service is used).
PACKAGES=(
  openvswitch-switch
  iproute2
  ethtool
  iputils-ping
  netcat-openbsd
  procps
  util-linux
  tcpdump
  iperf3
  python3-venv
  curl
  postgresql
  openssl
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # The packages' init scripts would start a system-wide Open vSwitch and
  # PostgreSQL; flowgate's test beds and tests start their own, so a failure
  # to start them (as in containers without systemd) is harmless.
  quiet=()
  others=()
  for pkg in "${missing[@]}"; do
    if [[ " ${QUIET_SERVICES[*]} " == *" $pkg "* ]]; then quiet+=("$pkg"); else others+=("$pkg"); fi
  done
  if ((${#others[@]})); then
    $SUDO apt-get install -y -qq --no-install-recommends "${others[@]}" >/dev/null
  fi
  if ((${#quiet[@]})); then
    # Debian starts a package's services on install: OVN's would be a
    # system-wide ovn-northd and OVN databases, and an ovn-controller that
    # takes over the system Open vSwitch's br-int. The benchmark runs its
    # own in a private namespace and nothing uses the system ones, so a
    # temporary policy-rc.d (exit 101: "action forbidden") keeps them from
    # starting, and they are disabled for later boots.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
      $SUDO chmod 755 "$policy"
      trap '$SUDO rm -f "$policy"' EXIT
    fi
    $SUDO apt-get install -y -qq --no-install-recommends "${quiet[@]}" >/dev/null
    if [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now ovn-host ovn-controller ovn-central ovn-northd \
        ovn-ovsdb-server-nb ovn-ovsdb-server-sb >/dev/null 2>&1 || true
    fi
  fi
else
  echo "setup: Debian packages present"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) and re-run" >&2
  exit 1
fi

# Python venv with the real AWS clients the EC2 API tests drive (boto3, the
# AWS CLI, boto 2) and moto_server, the baseline of the API benchmark.
# Pinned; skipped when the venv already has exactly these versions, so a
# re-run takes a moment.
VENV="$(cd "$(dirname "$0")/.." && pwd)/.venv"
PY_PACKAGES=(boto3==1.44.8 awscli==1.46.3 boto==2.49.0 "moto[server]==5.2.5")
PY_STAMP="$VENV/.flowgate-packages"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$PY_STAMP" 2>/dev/null)" = "${PY_PACKAGES[*]}" ]; then
  echo "setup: Python venv present ($VENV)"
else
  echo "setup: creating Python venv $VENV (${PY_PACKAGES[*]})"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  echo "${PY_PACKAGES[*]}" > "$PY_STAMP"
fi
