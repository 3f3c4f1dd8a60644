"""Restart: `populate` makes changes and writes what the server
acknowledged to a file; after flowgate is killed and started again,
`verify` checks everything acknowledged is still there."""
import json
import os
import sys

from common import boto3_client, check, main

STATE = sys.argv[2]


def snapshot(ec2):
    groups = {
        g["GroupId"]: (g["GroupName"], sorted(json.dumps(p, sort_keys=True) for p in g["IpPermissions"]))
        for g in ec2.describe_security_groups()["SecurityGroups"]
    }
    addresses = sorted((a["PublicIp"], a["AllocationId"], a.get("InstanceId")) for a in ec2.describe_addresses()["Addresses"])
    instances = sorted(
        (i["InstanceId"], i["PrivateIpAddress"], i["State"]["Name"])
        for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
    )
    tags = sorted((t["ResourceId"], t["Key"], t["Value"]) for t in ec2.describe_tags()["Tags"])
    return json.loads(json.dumps({"groups": groups, "addresses": addresses, "instances": instances, "tags": tags}))


def populate():
    ec2 = boto3_client("A")
    image_id = os.environ["FLOWGATE_IMAGE_ID"]
    for n in range(5):
        sg = ec2.create_security_group(GroupName=f"g{n}", Description=f"group {n}")["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 1000 + n, "ToPort": 1000 + n, "IpRanges": [{"CidrIp": f"10.{n}.0.0/16"}]}])
    inst = ec2.run_instances(ImageId=image_id, MinCount=3, MaxCount=3)["Instances"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[i["InstanceId"] for i in inst], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    a = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=a["AllocationId"], InstanceId=inst[0]["InstanceId"])
    ec2.allocate_address(Domain="vpc")
    ec2.create_tags(Resources=[inst[1]["InstanceId"]], Tags=[{"Key": "Name", "Value": "kept"}])
    ec2.delete_security_group(GroupName="g4")
    with open(STATE, "w") as f:
        json.dump(snapshot(ec2), f)
    check(True, "populated and acknowledged")


def verify():
    ec2 = boto3_client("A")
    with open(STATE) as f:
        before = json.load(f)
    after = snapshot(ec2)
    for part in before:
        check(after[part] == before[part], f"{part} survived the restart")


main(populate if sys.argv[1] == "populate" else verify)
