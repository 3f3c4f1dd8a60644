"""The seed scenario end to end, through boto3, with real packets: an
instance (a network namespace started by the netns driver) running a web
server from its UserData, a security group that opens and closes doors, an
Elastic IP the external host reaches through the public gateway, moved to
an instance on the other hypervisor, then released."""
import base64
import os
import re

from common import boto3_client, check, main
from netcheck import (Capture, Listener, bridge_of, eventually, flows, http_get, namespaces, never, ns_of, pings,
                      run_in, tcp_connects)

EXTERNAL = os.environ["FLOWGATE_EXTERNAL_NS"]
EXTERNAL_IP = os.environ["FLOWGATE_EXTERNAL_IP"]
EXTERNAL_CIDR = os.environ["FLOWGATE_EXTERNAL_CIDR"]
GATEWAY = os.environ["FLOWGATE_GATEWAY_NS"]

USER_DATA = """#!/bin/sh
cd /tmp
python3 -m http.server 80 &
exec nc -lk 22
"""


def launch(ec2, sg_id):
    r = ec2.run_instances(
        ImageId=os.environ["FLOWGATE_IMAGE_ID"], InstanceType="m1.small", MinCount=1, MaxCount=1,
        SecurityGroupIds=[sg_id], UserData=USER_DATA,
    )
    instance_id = r["Instances"][0]["InstanceId"]
    check(r["Instances"][0]["State"]["Name"] == "pending", f"{instance_id} starts pending")
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    [inst] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    check(inst["State"]["Name"] == "running", f"{instance_id} is running once its port is bound")
    ns = ns_of(instance_id)
    eventually(f"the web server of {instance_id} listens", lambda: ":80 " in run_in(ns, "ss", "-ltn").stdout)
    return inst


def addresses_of(instance):
    """An instance's private IP and MAC(s), as they would appear in flows."""
    macs = [n["MacAddress"] for n in instance.get("NetworkInterfaces", []) if "MacAddress" in n]
    return [instance["PrivateIpAddress"], *macs]


def scenario():
    ec2 = boto3_client("A")
    sg_id = ec2.create_security_group(GroupName="Test Group", Description="Description of Test Group")["GroupId"]
    first = launch(ec2, sg_id)
    first_id, first_ip = first["InstanceId"], first["PrivateIpAddress"]

    addr = ec2.allocate_address(Domain="vpc")
    eip = addr["PublicIp"]
    assoc = ec2.associate_address(AllocationId=addr["AllocationId"], InstanceId=first_id)

    # A group without rules: nothing gets in.
    never("ssh through the Elastic IP with no rule", lambda: tcp_connects(EXTERNAL, eip, 22))
    check(True, "a group with no rules keeps tcp 22 closed")

    ec2.authorize_security_group_ingress(GroupId=sg_id, IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp=EXTERNAL_CIDR)
    eventually("ssh from the external host", lambda: tcp_connects(EXTERNAL, eip, 22), timeout=30)
    check(True, f"after authorize tcp 22 from {EXTERNAL_CIDR}, nc connects")
    check(http_get(EXTERNAL, eip) is None, "port 80 is still closed")

    ec2.authorize_security_group_ingress(GroupId=sg_id, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0")
    page = eventually("an HTTP GET through the Elastic IP", lambda: http_get(EXTERNAL, eip), timeout=30)
    check("Directory listing" in page, "after authorize tcp 80 from 0.0.0.0/0, HTTP GET works")
    console = ec2.get_console_output(InstanceId=first_id).get("Output", "")
    check(EXTERNAL_IP in console, "the instance saw the external host's address (its web server's log)")

    ec2.authorize_security_group_ingress(
        GroupId=sg_id, IpPermissions=[{"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    eventually("ping of the Elastic IP", lambda: pings(EXTERNAL, eip), timeout=30)
    check(True, "the external host pings the Elastic IP")

    # Outbound: the external host sees the public address.
    listener = Listener(EXTERNAL, 9000)
    run_in(ns_of(first_id), "sh", "-c", f"echo outbound | nc -n -w 2 -q 0 {EXTERNAL_IP} 9000")
    out, err = listener.result()
    check("outbound" in out and eip in err, f"the external host sees {eip} as the source ({err.strip()})")

    ec2.revoke_security_group_ingress(GroupId=sg_id, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0")
    eventually("port 80 closed after revoke", lambda: http_get(EXTERNAL, eip) is None, timeout=30)
    check(True, "revoke closes port 80 again")

    ec2.disassociate_address(AssociationId=assoc["AssociationId"])
    eventually("the Elastic IP unreachable once disassociated", lambda: not pings(EXTERNAL, eip), timeout=30)
    check(True, "disassociated: unreachable")

    # The same address on an instance of the other hypervisor.
    second = launch(ec2, sg_id)
    second_id = second["InstanceId"]
    hv1, hv2 = bridge_of(ns_of(first_id)), bridge_of(ns_of(second_id))
    check(hv1 and hv2 and hv1 != hv2, f"the instances run on different hypervisors ({hv1}, {hv2})")
    garp = Capture(GATEWAY, f"arp and host {eip}")
    ec2.associate_address(AllocationId=addr["AllocationId"], InstanceId=second_id)
    seen = garp.result()
    mac = "02:fb:" + ":".join(f"{int(o):02x}" for o in eip.split("."))
    check(eip in seen and mac in seen, f"a gratuitous ARP for {eip} at {mac} reached the physical network")
    eventually("ping of the moved Elastic IP", lambda: pings(EXTERNAL, eip), timeout=30)
    check(True, "the Elastic IP answers from the other hypervisor")

    ec2.disassociate_address(PublicIp=eip)
    ec2.release_address(AllocationId=addr["AllocationId"])
    check(ec2.describe_addresses()["Addresses"] == [], "released")

    ec2.terminate_instances(InstanceIds=[first_id, second_id])
    ec2.get_waiter("instance_terminated").wait(
        InstanceIds=[first_id, second_id], WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    gone = {ns_of(first_id), ns_of(second_id)}
    eventually("the instances' namespaces removed", lambda: not (gone & namespaces()), timeout=30)
    check(bridge_of(ns_of(first_id)) is None and bridge_of(ns_of(second_id)) is None, "their ports are gone from the bridges")
    check(True, "terminated instances leave no namespace or port behind")
    named = [re.compile(re.escape(a) + r"(?![0-9a-f])") for inst in (first, second) for a in addresses_of(inst)]
    def leftovers():
        return [f for f in flows() if any(n.search(f) for n in named)]
    # The controller removes their flows after the driver's teardown.
    eventually("no flow naming their addresses", lambda: not leftovers())
    check(True, "nor any flow naming their addresses")
    again = ec2.run_instances(ImageId=os.environ["FLOWGATE_IMAGE_ID"], MinCount=1, MaxCount=1,
                              PrivateIpAddress=first["PrivateIpAddress"])["Instances"][0]
    check(again["PrivateIpAddress"] == first["PrivateIpAddress"], "and their private IPs can be handed out again")
    ec2.terminate_instances(InstanceIds=[again["InstanceId"]])


if __name__ == "__main__":
    main(scenario)
