"""`flowgate trace` and `flowgate flows` against real packets on the cloud
test bed: for an allowed, a denied and a NATed packet, what trace says
(from the model, and from the live switch with --live) is what real
packets do; `flowgate flows` shows the allowing rule's flows counting
them."""
import json
import os
import subprocess

from common import boto3_client, check, main
from netcheck import Listener, eventually, http_get, ns_of, run_in, tcp_connects

EXTERNAL = os.environ["FLOWGATE_EXTERNAL_NS"]
EXTERNAL_IP = os.environ["FLOWGATE_EXTERNAL_IP"]
EXTERNAL_CIDR = os.environ["FLOWGATE_EXTERNAL_CIDR"]

USER_DATA = """#!/bin/sh
cd /tmp
exec python3 -m http.server 80
"""


def flowgate(command, *args):
    cli = [os.environ["FLOWGATE_BIN"], command, "--config", os.environ["FLOWGATE_CONFIG"],
           "--data-dir", os.environ["FLOWGATE_DATA_DIR"], "--json", *args]
    r = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cli)} failed: {r.stderr}")
    return json.loads(r.stdout)


def trace(src, dst, *args):
    return flowgate("trace", src, dst, "--live", "--appctl-target", os.environ["FLOWGATE_APPCTL_TARGET"], *args)


def scenario():
    ec2 = boto3_client("A")
    sg_id = ec2.create_security_group(GroupName="web", Description="web servers")["GroupId"]
    rule = ec2.authorize_security_group_ingress(
        GroupId=sg_id, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp=EXTERNAL_CIDR)["SecurityGroupRules"][0]
    r = ec2.run_instances(ImageId=os.environ["FLOWGATE_IMAGE_ID"], MinCount=1, MaxCount=1,
                          SecurityGroupIds=[sg_id], UserData=USER_DATA)
    instance_id = r["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    [inst] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    private_ip = inst["PrivateIpAddress"]
    eventually("the web server listens", lambda: ":80 " in run_in(ns_of(instance_id), "ss", "-ltn").stdout)
    addr = ec2.allocate_address(Domain="vpc")
    eip = addr["PublicIp"]
    ec2.associate_address(AllocationId=addr["AllocationId"], InstanceId=instance_id)
    eventually("an HTTP GET through the Elastic IP", lambda: http_get(EXTERNAL, eip), timeout=30)

    # Allowed: the external host's HTTP request, translated to the private address.
    allowed = trace(EXTERNAL_IP, eip, "--protocol", "tcp", "--port", "80")
    check(allowed["verdict"] == "delivered" and allowed["instance"] == instance_id,
          f"trace: tcp 80 from the external host is delivered to {instance_id}")
    check(allowed["dst"] == private_ip and f"destination {eip} -> {private_ip}" in allowed["nat"],
          f"trace: with the destination translated to {private_ip}")
    check(any(rule["SecurityGroupRuleId"] in step for step in allowed["reasoning"]),
          "trace: names the rule that allows it")
    check(allowed["live"]["agrees"], f"trace --live: the switch agrees ({allowed['live']['outputs']})")
    check(http_get(EXTERNAL, eip) is not None, "real packets: the HTTP GET works")

    # Denied: ssh is not allowed.
    denied = trace(EXTERNAL_IP, eip, "--protocol", "tcp", "--port", "22")
    check(denied["verdict"] == "dropped", "trace: tcp 22 from the external host is dropped")
    check(any("no rule allows" in step for step in denied["reasoning"]), "trace: because no rule allows it")
    check(denied["live"]["agrees"] and denied["live"]["outputs"] == [], "trace --live: the switch drops it too")
    run_in(ns_of(instance_id), "sh", "-c", "nc -l -p 22 >/dev/null 2>&1 &")
    eventually("a listener on port 22", lambda: ":22 " in run_in(ns_of(instance_id), "ss", "-ltn").stdout)
    check(not tcp_connects(EXTERNAL, eip, 22), "real packets: tcp 22 does not connect")

    # NATed outbound: the instance connects out, from its Elastic IP.
    out = trace(instance_id, EXTERNAL_IP, "--protocol", "tcp", "--port", "9000")
    check(out["verdict"] == "internet" and out["src"] == eip,
          f"trace: the instance's connection out leaves from {eip}")
    check(f"source {private_ip} -> {eip}" in out["nat"], "trace: source NAT to the Elastic IP")
    check(out["live"]["agrees"], f"trace --live: the switch agrees ({out['live']['outputs']})")
    listener = Listener(EXTERNAL, 9000)
    run_in(ns_of(instance_id), "sh", "-c", f"echo out | nc -n -w 2 -q 0 {EXTERNAL_IP} 9000")
    got, err = listener.result()
    check("out" in got and eip in err, f"real packets: the external host sees {eip} as the source")

    # A switch that does not do what the model says is caught: a flow
    # nobody compiled, dropping everything the bridge receives.
    hv = bridge_of_instance(instance_id)
    env = dict(os.environ, OVS_RUNDIR=os.environ["FLOWGATE_OVS_RUNDIR"])
    rogue = ["table=0,priority=65535,cookie=0x77,actions=drop"]
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-flow", hv, *rogue], check=True, env=env, timeout=10)
    try:
        tampered = trace(EXTERNAL_IP, eip, "--protocol", "tcp", "--port", "80")
        check(tampered["verdict"] == "delivered" and not tampered["live"]["agrees"],
              "trace --live: a tampered switch disagrees with the model")
        owners = flowgate("flows", hv, "--ovs-rundir", os.environ["FLOWGATE_OVS_RUNDIR"])
        check([o["cookie"] for o in owners if o["kind"] is None] == ["0x77"],
              "flowgate flows lists the flow no object owns")
    finally:
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--strict", "del-flows", hv, "table=0,priority=65535"],
                       check=True, env=env, timeout=10)

    # After the rule is revoked the model drops port 80, and so does the
    # switch once it has the new flows.
    ec2.revoke_security_group_ingress(GroupId=sg_id, SecurityGroupRuleIds=[rule["SecurityGroupRuleId"]])
    eventually("port 80 closed", lambda: http_get(EXTERNAL, eip) is None, timeout=30)
    revoked = trace(EXTERNAL_IP, eip, "--protocol", "tcp", "--port", "80")
    check(revoked["verdict"] == "dropped" and revoked["live"]["agrees"], "trace follows a revoke")

    # flowgate flows: the rule's flows counted the HTTP packets before it went.
    ec2.authorize_security_group_ingress(GroupId=sg_id, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp=EXTERNAL_CIDR)
    eventually("port 80 open again", lambda: http_get(EXTERNAL, eip), timeout=30)
    [new_rule] = [r for r in ec2.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [sg_id]}])["SecurityGroupRules"] if not r["IsEgress"]]

    def rule_packets():
        owners = flowgate("flows", hv, "--ovs-rundir", os.environ["FLOWGATE_OVS_RUNDIR"])
        return sum(o["packets"] for o in owners if o["id"] == new_rule["SecurityGroupRuleId"])

    eventually("the rule's flows count the HTTP connection", lambda: rule_packets() > 0, timeout=30)
    owners = flowgate("flows", hv, "--ovs-rundir", os.environ["FLOWGATE_OVS_RUNDIR"])
    kinds = {o["kind"] for o in owners}
    check({"pipeline", "instance", "rule", "address", "network"} <= kinds,
          f"flowgate flows groups the bridge's flows by owner ({sorted(k for k in kinds if k)})")
    check(all(o["kind"] for o in owners), "and every flow on the bridge has an owner in the model")


def bridge_of_instance(instance_id):
    from netcheck import bridge_of
    return bridge_of(ns_of(instance_id))


if __name__ == "__main__":
    main(scenario)
