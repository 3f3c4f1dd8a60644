"""Failover of the switches' master (crates/flowgate/tests/failover.rs): three
flowgate nodes on one PostgreSQL store, this script talking to node A
(FLOWGATE_PORT) while node B (FLOWGATE_PORT_B, process FLOWGATE_KILL_PID) is
the master of every switch.

1. The seed scenario through A: a web group, an instance serving on tcp 80,
   8080 and an echo service on 9000, an Elastic IP; the external host
   fetches a page through it (B, the master, installed the flows).
2. A TCP connection from the external host to the Elastic IP's echo service
   exchanges a message every 20 ms for the rest of the script; writers add
   rules to the web group through A and through B.
3. B is killed with SIGKILL. A's writer goes on; a rule for tcp 8080 is
   added at once.
4. Checks: tcp 8080 answers once another node took over (the time from the
   kill is printed, with the election and the takeover from the nodes'
   logs); every write A or B acknowledged is listed by node C; rules
   acknowledged while no node was master are enforced (a connection to
   their port is refused by the instance instead of dropped, as a port no
   rule opens is); the echo connection never broke.
"""
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time

from common import boto3_client, check, main
from netcheck import eventually, http_get, ns_of, run_in
from packets import ECHO_SERVER

EXTERNAL = os.environ["FLOWGATE_EXTERNAL_NS"]
HERE = os.path.dirname(os.path.abspath(__file__))

# Web servers on tcp 80 and 8080, and the echo service on tcp 9000 as its
# init (packets.ECHO_SERVER without its shebang line).
USER_DATA = (
    "#!/bin/sh\ncd /tmp\npython3 -m http.server 80 &\npython3 -m http.server 8080 &\n"
    + ECHO_SERVER.format(port=9000).split("\n", 1)[1]
)

# Reaches the instance: the connection is accepted, or refused by its
# kernel (a RST, which only comes back if the SYN was let in). A SYN the
# switch drops times out instead.
REACHES = """
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("open")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("dropped", e)
"""


def reaches(ip, port, timeout=3.0):
    out = run_in(EXTERNAL, "python3", "-c", REACHES, ip, str(port), str(timeout)).stdout
    return out.startswith("open") or out.startswith("refused")


class Writer(threading.Thread):
    """Adds a tcp rule per port to the group through one node, until told
    to stop or until the node stops answering; remembers what was
    acknowledged, and when."""

    def __init__(self, port, group_id, first_port):
        super().__init__(daemon=True)
        self.ec2 = client_for(port)
        self.group_id = group_id
        self.next_port = first_port
        self.acknowledged = []  # (port, monotonic time)
        self.failed = None
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            port = self.next_port
            try:
                self.ec2.authorize_security_group_ingress(
                    GroupId=self.group_id, IpProtocol="tcp", FromPort=port, ToPort=port, CidrIp="0.0.0.0/0"
                )
            except Exception as e:  # the node is gone: an unacknowledged write
                self.failed = e
                return
            self.acknowledged.append((port, time.monotonic()))
            self.next_port += 2
            time.sleep(0.01)


def client_for(port):
    """A boto3 client of account A talking to the node on `port`."""
    return boto3_client("A", endpoint=f"http://127.0.0.1:{port}")


def log_time(path, text):
    """When the first line of a node's log containing `text` was written
    (seconds since the Unix epoch), or None."""
    for line in open(path, errors="replace"):
        if text in line:
            stamp = line.split()[0]
            return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return None


def run():
    node_a = int(os.environ["FLOWGATE_PORT"])
    ec2 = client_for(node_a)
    sg_id = ec2.create_security_group(GroupName="web", Description="web servers")["GroupId"]
    for port in (80, 9000):
        ec2.authorize_security_group_ingress(GroupId=sg_id, IpProtocol="tcp", FromPort=port, ToPort=port, CidrIp="0.0.0.0/0")
    r = ec2.run_instances(
        ImageId=os.environ["FLOWGATE_IMAGE_ID"], MinCount=1, MaxCount=1, SecurityGroupIds=[sg_id], UserData=USER_DATA
    )
    instance_id = r["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    eventually("the echo service listens", lambda: ":9000 " in run_in(ns_of(instance_id), "ss", "-ltn").stdout)
    addr = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=addr["AllocationId"], InstanceId=instance_id)
    eip = addr["PublicIp"]
    eventually("an HTTP GET through the Elastic IP", lambda: http_get(EXTERNAL, eip), timeout=30)
    check(True, f"seed scenario through node A: {instance_id} serves through {eip} while B is master")
    check(not reaches(eip, 8080), "tcp 8080 is closed: no rule opens it")

    stream = subprocess.Popen(
        ["ip", "netns", "exec", EXTERNAL, sys.executable, os.path.join(HERE, "echo_stream.py"), eip, "9000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    first = stream.stdout.readline()
    check(first.startswith("connected"), f"a TCP connection to {eip}:9000 exchanges messages: {first.strip()}")

    writers = [
        Writer(node_a, sg_id, 20000),
        Writer(int(os.environ["FLOWGATE_PORT_B"]), sg_id, 20001),
    ]
    for w in writers:
        w.start()
    eventually("both nodes acknowledge writes", lambda: all(len(w.acknowledged) >= 10 for w in writers), timeout=60)

    killed_at = time.time()
    killed = time.monotonic()
    os.kill(int(os.environ["FLOWGATE_KILL_PID"]), signal.SIGKILL)
    ec2.authorize_security_group_ingress(GroupId=sg_id, IpProtocol="tcp", FromPort=8080, ToPort=8080, CidrIp="0.0.0.0/0")
    opened = time.monotonic()
    # Short tries: a SYN the switch dropped would be sent again only after
    # a second, which would hide when the rule took effect.
    eventually("tcp 8080 answers through the Elastic IP", lambda: reaches(eip, 8080, 0.2), timeout=60)
    enforced = time.monotonic()
    check(http_get(EXTERNAL, eip, 8080), "the web server on tcp 8080 answers through the Elastic IP")
    # A few more writes through A once the new master is in place.
    a_done = len(writers[0].acknowledged)
    eventually("A acknowledges writes after the takeover", lambda: len(writers[0].acknowledged) >= a_done + 10, timeout=60)
    for w in writers:
        w.stop.set()
        w.join(timeout=60)
    check(writers[1].failed is not None, f"B stopped answering when killed ({type(writers[1].failed).__name__})")
    check(writers[0].failed is None, f"A answered throughout: {writers[0].failed}")

    elected = [t for t in (log_time(p, "elected leader") for p in os.environ["FLOWGATE_NODE_LOGS"].split()) if t]
    synced = [t for t in (log_time(p, "took over as master") for p in os.environ["FLOWGATE_NODE_LOGS"].split()) if t]
    check(len(elected) == 1 and len(synced) == 1, f"one node took over: elected {elected}, synced {synced}")
    print(
        "takeover: elected %.0f ms after the kill, every switch in sync %.0f ms after it; "
        "a rule added %.0f ms after the kill answered %.0f ms after it"
        % (
            (elected[0] - killed_at) * 1000,
            (synced[0] - killed_at) * 1000,
            (opened - killed) * 1000,
            (enforced - killed) * 1000,
        ),
        flush=True,
    )

    # Every acknowledged write is there, as another node (C) lists it.
    c = client_for(int(os.environ["FLOWGATE_PORT_C"]))
    [group] = c.describe_security_groups(GroupIds=[sg_id])["SecurityGroups"]
    listed = {p["FromPort"] for p in group["IpPermissions"]}
    acknowledged = [p for w in writers for p, _ in w.acknowledged]
    missing = sorted(set(acknowledged) - listed)
    check(not missing, f"node C lists all {len(acknowledged)} acknowledged writes (A and B), missing {missing}")

    # Writes acknowledged while no node was master are enforced now.
    during = [p for p, t in writers[0].acknowledged if killed < t < enforced]
    check(during, f"A acknowledged {len(during)} writes during the failover")
    for port in (during[0], during[-1]):
        check(reaches(eip, port), f"tcp {port}, authorized during the failover, reaches the instance")
    check(not reaches(eip, 7), "tcp 7, which no rule opens, is still dropped")

    stream.send_signal(signal.SIGTERM)
    out, _ = stream.communicate(timeout=30)
    summary = json.loads(out.strip().splitlines()[-1])
    check(summary["error"] is None, f"the connection through the Elastic IP never broke: {summary}")
    check(
        summary["last"] > killed_at + (enforced - killed),
        f"and went on after the takeover: {summary['rounds']} round trips, longest gap {summary['max_gap_ms']:.0f} ms",
    )


if __name__ == "__main__":
    main(run)
