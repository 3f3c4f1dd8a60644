"""A long-lived TCP connection for the failover test (run in the external
host's namespace by cloud_failover_boto3.py): connects to IP PORT, an echo
service, prints "connected", then sends a numbered message every 20 ms and
reads it back until SIGTERM; prints one JSON line: round trips, the longest
gap between two of them, the time of the last one (seconds since the Unix
epoch) and the error that broke the connection, if one did.

A round trip that takes longer than 30 s counts as broken: the bound is for
a connection that is gone, far beyond any failover."""
import json
import signal
import socket
import sys
import time

stop = False


def on_term(*_):
    global stop
    stop = True


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the peer")
        data += chunk
    return data


def main():
    signal.signal(signal.SIGTERM, on_term)
    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
    print("connected", flush=True)
    rounds, max_gap, error = 0, 0.0, None
    last = time.time()
    while not stop:
        message = rounds.to_bytes(8, "big")
        try:
            sock.sendall(message)
            if recv_exactly(sock, 8) != message:
                raise ConnectionError("the echo differs")
        except OSError as e:
            if stop:
                break
            error = f"{type(e).__name__}: {e}"
            break
        now = time.time()
        max_gap = max(max_gap, now - last)
        last = now
        rounds += 1
        time.sleep(0.02)
    print(json.dumps({"rounds": rounds, "max_gap_ms": max_gap * 1000, "last": last, "error": error}), flush=True)


if __name__ == "__main__":
    main()
