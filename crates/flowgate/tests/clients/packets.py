"""Hand-made frames and captures for the end-to-end scripts: what an
instance could send if it lied about its addresses (raw AF_PACKET frames,
sent from inside its namespace), captures on any interface of any
namespace, and a long-lived TCP exchange that reports when it stops getting
through. Every wait is bounded.

Run as a program inside a namespace (`ip netns exec NS python packets.py
send IFACE HEX...`) it sends the frames given in hex.
"""
import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def mac_bytes(mac):
    return bytes(int(part, 16) for part in mac.split(":"))


def ip_bytes(ip):
    return socket.inet_aton(ip)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def udp_frame(src_mac, dst_mac, src_ip, dst_ip, sport, dport, payload=b"flowgate"):
    """An Ethernet/IPv4/UDP frame with correct IP and UDP checksums."""
    length = 8 + len(payload)
    pseudo = ip_bytes(src_ip) + ip_bytes(dst_ip) + struct.pack("!BBH", 0, 17, length)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    udp_sum = checksum(pseudo + header + payload) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, length, udp_sum) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0x1234, 0, 64, 17, 0, ip_bytes(src_ip), ip_bytes(dst_ip))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + b"\x08\x00" + ip + udp


def arp_frame(eth_src, eth_dst, op, sha, spa, tha, tpa):
    """An ARP request (op 1) or reply (op 2)."""
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac_bytes(sha) + ip_bytes(spa) + mac_bytes(tha) + ip_bytes(tpa)
    return mac_bytes(eth_dst) + mac_bytes(eth_src) + b"\x08\x06" + arp + b"\0" * 18


def send_from(ns, frames, iface="eth0", repeat=3):
    """Sends raw frames out of `iface` inside namespace `ns`, `repeat` times
    each, a little apart (a capture must not miss them all)."""
    hexes = [f.hex() for f in frames]
    r = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, os.path.join(HERE, "packets.py"), "send", iface, str(repeat), *hexes],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if r.returncode != 0:
        raise AssertionError(f"sending raw frames in {ns} failed: {r.stderr}")


class Sniffer:
    """tcpdump on `iface` of namespace `ns` for what matches `expression`;
    `lines()` stops it and returns what it printed (one line per frame,
    with link-level headers)."""

    def __init__(self, ns, iface, expression):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "tcpdump", "-l", "-n", "-e", "--immediate-mode", "-i", iface, *expression.split()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # tcpdump says "listening on" once its capture is open.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if "listening on" in line or not line:
                break
        if self.proc.poll() is not None:
            raise AssertionError(f"tcpdump on {ns}/{iface} exited: {self.proc.stderr.read()}")

    def lines(self, settle=1.5):
        time.sleep(settle)
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return [line for line in out.splitlines() if line.strip()]


class Exchange:
    """A TCP connection from namespace `ns` to ip:port that sends a line
    every 0.2 s and expects it echoed; `answered(since)` counts echoes
    received after the monotonic time `since`. The server end must echo
    (see ECHO_SERVER)."""

    def __init__(self, ns, ip, port, seconds=60):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, os.path.join(HERE, "packets.py"), "exchange", ip, str(port), str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.echoes = []
        self.buffer = ""

    def _read(self):
        try:
            chunk = self.proc.stdout.read()
        except (BlockingIOError, TypeError):
            chunk = None
        if chunk:
            self.buffer += chunk
            *done, self.buffer = self.buffer.split("\n")
            for line in done:
                if line.startswith("echo "):
                    # Stamp with our own clock: the child's is not comparable.
                    self.echoes.append(time.monotonic())

    def answered(self, since):
        self._read()
        return sum(1 for t in self.echoes if t > since)

    def close(self):
        self.proc.kill()
        self.proc.communicate()


# UserData that serves an echo on {port} (python3 from the system).
ECHO_SERVER = """#!/bin/sh
exec python3 -c '
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {port})); s.listen(16)
def serve(c):
    while True:
        d = c.recv(4096)
        if not d:
            return
        c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'
"""


def _send(iface, repeat, hexes):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    for _ in range(int(repeat)):
        for h in hexes:
            s.send(bytes.fromhex(h))
        time.sleep(0.1)


def _exchange(ip, port, seconds):
    deadline = time.monotonic() + float(seconds)
    c = socket.create_connection((ip, int(port)), timeout=3)
    c.settimeout(0.5)
    n = 0
    while time.monotonic() < deadline:
        n += 1
        try:
            c.sendall(f"{n}\n".encode())
            if c.recv(4096):
                print(f"echo {n}", flush=True)
        except OSError:
            # A lost echo is what the caller is looking for; keep trying.
            pass
        time.sleep(0.2)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        _send(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif sys.argv[1] == "exchange":
        _exchange(*sys.argv[2:5])
