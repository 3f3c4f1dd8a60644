"""Launching and retiring instances through boto3 for the end-to-end
scripts, with bounded waits."""
import os

from common import check
from netcheck import bridge_of, eventually, namespaces, ns_of, run_in

WAIT = {"Delay": 1, "MaxAttempts": 30}


def launch(ec2, groups, user_data=None, private_ip=None, listens_on=None):
    """Runs one instance in `groups` and waits until it runs (its port is
    bound) and, if `listens_on` is given, until its UserData listens there.
    Returns the instance as DescribeInstances shows it."""
    args = dict(ImageId=os.environ["FLOWGATE_IMAGE_ID"], InstanceType="m1.small", MinCount=1, MaxCount=1,
                SecurityGroupIds=groups)
    if user_data:
        args["UserData"] = user_data
    if private_ip:
        args["PrivateIpAddress"] = private_ip
    instance_id = ec2.run_instances(**args)["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig=WAIT)
    [inst] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    if listens_on:
        eventually(f"{instance_id} listens on {listens_on}",
                   lambda: f":{listens_on} " in run_in(ns_of(instance_id), "ss", "-ltn").stdout)
    return inst


def hypervisor_of(inst):
    """The bridge (hypervisor) the instance's port is on, as Open vSwitch
    says, and the availability zone DescribeInstances gives."""
    return bridge_of(ns_of(inst["InstanceId"])), inst["Placement"]["AvailabilityZone"]


def terminate(ec2, instance_ids):
    ec2.terminate_instances(InstanceIds=instance_ids)
    ec2.get_waiter("instance_terminated").wait(InstanceIds=instance_ids, WaiterConfig=WAIT)
    gone = {ns_of(i) for i in instance_ids}
    eventually("the terminated instances' namespaces removed", lambda: not (gone & namespaces()), timeout=30)
    check(True, f"terminated {', '.join(instance_ids)}")
