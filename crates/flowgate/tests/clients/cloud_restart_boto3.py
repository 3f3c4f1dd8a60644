"""flowgate restarts under running instances (crates/flowgate/tests/cloud.rs
kills `flowgate serve` with SIGKILL between the phases of this script):

  setup STATE    an instance with a web server, a group open on tcp 80 and
                 an Elastic IP; the external host fetches a page; the
                 instance id and address go to the file STATE
  outage STATE   serve is dead: the switches keep forwarding
  after STATE    serve is back: the instance is still known, running and
                 bound, and its web server still answers through the
                 Elastic IP
"""
import json
import os
import sys

from common import boto3_client, check, main
from netcheck import eventually, http_get, ns_of, run_in

EXTERNAL = os.environ["FLOWGATE_EXTERNAL_NS"]

USER_DATA = """#!/bin/sh
cd /tmp
exec python3 -m http.server 80
"""


def setup(path):
    ec2 = boto3_client("A")
    sg_id = ec2.create_security_group(GroupName="web", Description="web servers")["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg_id, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0")
    r = ec2.run_instances(
        ImageId=os.environ["FLOWGATE_IMAGE_ID"], MinCount=1, MaxCount=1, SecurityGroupIds=[sg_id], UserData=USER_DATA
    )
    instance_id = r["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    eventually("the web server listens", lambda: ":80 " in run_in(ns_of(instance_id), "ss", "-ltn").stdout)
    addr = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=addr["AllocationId"], InstanceId=instance_id)
    eip = addr["PublicIp"]
    eventually("an HTTP GET through the Elastic IP", lambda: http_get(EXTERNAL, eip), timeout=30)
    check(True, f"{instance_id} serves through {eip}")
    with open(path, "w") as f:
        json.dump({"instance": instance_id, "eip": eip}, f)


def outage(path):
    state = json.load(open(path))
    check(http_get(EXTERNAL, state["eip"]) is not None, "with flowgate dead, the web server still answers")


def after(path):
    state = json.load(open(path))
    ec2 = boto3_client("A")
    [inst] = ec2.describe_instances(InstanceIds=[state["instance"]])["Reservations"][0]["Instances"]
    check(inst["State"]["Name"] == "running", "the instance is still running after the restart")
    check(inst.get("PublicIpAddress") == state["eip"], "and still has its Elastic IP")
    check(http_get(EXTERNAL, state["eip"]) is not None, "its web server answers through the Elastic IP")


if __name__ == "__main__":
    phase, path = sys.argv[1], sys.argv[2]
    main(lambda: {"setup": setup, "outage": outage, "after": after}[phase](path))
