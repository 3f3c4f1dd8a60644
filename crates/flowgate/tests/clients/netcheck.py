"""Data-plane checks for the end-to-end scripts: real packets between the
test bed's namespaces (the external host, the public gateway, instances
started by the netns driver), every wait bounded."""
import os
import subprocess
import tempfile
import time


def ns_of(instance_id):
    """The namespace (and port) name the netns driver gives an instance."""
    return "fg" + instance_id[-13:]


def run_in(ns, *cmd, timeout=10):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout)


def tcp_connects(ns, ip, port):
    return run_in(ns, "nc", "-z", "-n", "-w", "2", ip, str(port)).returncode == 0


def http_get(ns, ip, port=80):
    r = run_in(ns, "curl", "-s", "-m", "3", f"http://{ip}:{port}/")
    return r.stdout if r.returncode == 0 else None


def pings(ns, ip):
    return run_in(ns, "ping", "-n", "-q", "-c", "1", "-W", "1", ip).returncode == 0


def eventually(what, probe, timeout=30.0):
    """Polls `probe` until it returns something truthy; returns it. The
    deadline only costs time when the check fails: the machine is shared."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            if os.environ.get("FLOWGATE_DEBUG_PAUSE"):
                print(f"PAUSED at: {what}", flush=True)
                time.sleep(int(os.environ["FLOWGATE_DEBUG_PAUSE"]))
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.2)


def never(what, probe, duration=2.0):
    """Checks `probe` stays falsy for `duration` (a closed door stays closed)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if probe():
            raise AssertionError(f"unexpectedly: {what}")
        time.sleep(0.3)


class Listener:
    """A TCP listener in a namespace that reports its peer's address."""

    def __init__(self, ns, port):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "nc", "-l", "-v", "-n", "-p", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        eventually(f"nc listening on port {port} in {ns}", lambda: f":{port} " in run_in(ns, "ss", "-Hltn").stdout)

    def result(self, timeout=5):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return out, err


class Capture:
    """tcpdump in a namespace, for what crosses a link."""

    def __init__(self, ns, expression, count=1):
        # tcpdump says on stderr when it listens: nothing sent before
        # then is seen.
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "tcpdump", "-l", "-n", "-e", "-c", str(count), "-i", "eth0", *expression.split()],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        eventually(f"tcpdump listening in {ns}", self._listening)

    def _listening(self):
        self.stderr.seek(0)
        return "listening on" in self.stderr.read()

    def result(self, timeout=8):
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


def bridge_of(port):
    """The bridge an OVS port is on, in the test bed's database."""
    db = os.environ["FLOWGATE_OVSDB"]
    r = subprocess.run(["ovs-vsctl", f"--db={db}", "port-to-br", port], capture_output=True, text=True, timeout=10)
    return r.stdout.strip() if r.returncode == 0 else None


def namespaces():
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return {line.split()[0] for line in r.stdout.splitlines() if line.strip()}


def flows():
    """Every flow of every hypervisor bridge, as `ovs-ofctl dump-flows` prints them."""
    env = dict(os.environ, OVS_RUNDIR=os.environ["FLOWGATE_OVS_RUNDIR"])
    lines = []
    for bridge in os.environ["FLOWGATE_BRIDGES"].split():
        r = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge], capture_output=True, text=True,
                           timeout=10, env=env, check=True)
        lines += [line.strip() for line in r.stdout.splitlines() if "cookie=" in line]
    return lines
