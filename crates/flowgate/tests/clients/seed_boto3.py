"""The seed scenario through boto3 (Signature Version 4), each result checked."""
import ipaddress
import os
import time

from common import boto3_client, check, main


def scenario():
    ec2 = boto3_client("A")
    image_id = os.environ["FLOWGATE_IMAGE_ID"]
    pool = ipaddress.ip_network(os.environ["FLOWGATE_POOL_CIDR"])

    sg = ec2.create_security_group(GroupName="Test Group", Description="Description of Test Group")
    sg_id = sg["GroupId"]
    check(sg_id.startswith("sg-"), f"create_security_group gave {sg_id}")
    [g] = ec2.describe_security_groups(GroupIds=[sg_id])["SecurityGroups"]
    check(g["IpPermissions"] == [], "a new group admits nothing")
    check(
        [p["IpProtocol"] for p in g["IpPermissionsEgress"]] == ["-1"]
        and g["IpPermissionsEgress"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}],
        "a new group allows all egress",
    )

    r = ec2.run_instances(
        ImageId=image_id, InstanceType="m1.small", MinCount=1, MaxCount=1, SecurityGroupIds=[sg_id]
    )
    instance_id = r["Instances"][0]["InstanceId"]
    check(r["Instances"][0]["State"]["Name"] == "pending", f"run_instances gave {instance_id} pending")
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    [inst] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    check(inst["State"]["Name"] == "running", "the instance is running")
    check([x["GroupId"] for x in inst["SecurityGroups"]] == [sg_id], "the instance is in the group")

    addr = ec2.allocate_address(Domain="vpc")
    check(ipaddress.ip_address(addr["PublicIp"]) in pool and addr["AllocationId"].startswith("eipalloc-"), f"allocate_address gave {addr['PublicIp']}")
    assoc = ec2.associate_address(AllocationId=addr["AllocationId"], InstanceId=instance_id)
    check(assoc["AssociationId"].startswith("eipassoc-"), "associate_address")
    [a] = ec2.describe_addresses(AllocationIds=[addr["AllocationId"]])["Addresses"]
    check(a["InstanceId"] == instance_id and a["PrivateIpAddress"] == inst["PrivateIpAddress"], "the address maps to the instance's private IP")
    [inst] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    check(inst.get("PublicIpAddress") == addr["PublicIp"], "the instance shows its public IP")

    ec2.disassociate_address(AssociationId=assoc["AssociationId"])
    [a] = ec2.describe_addresses(PublicIps=[addr["PublicIp"]])["Addresses"]
    check("InstanceId" not in a, "disassociate_address")
    ec2.release_address(AllocationId=addr["AllocationId"])
    check(ec2.describe_addresses()["Addresses"] == [], "release_address")

    out = ec2.authorize_security_group_ingress(
        GroupId=sg_id,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "HTTP"}]},
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/24"}]},
            {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "UserIdGroupPairs": [{"GroupId": sg_id}]},
        ],
    )
    check(out["Return"] and len(out["SecurityGroupRules"]) == 3, "authorize_security_group_ingress added 3 rules")
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [sg_id]}])["SecurityGroupRules"]
    check(len(rules) == 4 and all(r["SecurityGroupRuleId"].startswith("sgr-") for r in rules), "describe_security_group_rules lists 4 sgr- rules")
    icmp = [r for r in rules if r["IpProtocol"] == "icmp"][0]
    check(icmp["FromPort"] == 8 and icmp["ToPort"] == -1 and icmp["ReferencedGroupInfo"]["GroupId"] == sg_id, "icmp type 8 from the group itself")
    ec2.revoke_security_group_ingress(SecurityGroupRuleIds=[icmp["SecurityGroupRuleId"]], GroupId=sg_id)
    ec2.revoke_security_group_ingress(GroupId=sg_id, IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="10.0.0.0/24")
    [g] = ec2.describe_security_groups(GroupNames=["Test Group"])["SecurityGroups"]
    check([(p["IpProtocol"], p.get("FromPort")) for p in g["IpPermissions"]] == [("tcp", 80)], "revoke by rule id and by legacy parameters")
    check(g["IpPermissions"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0", "Description": "HTTP"}], "descriptions are kept")

    ec2.create_tags(Resources=[instance_id, sg_id], Tags=[{"Key": "Name", "Value": "web-1"}, {"Key": "env", "Value": "test"}])
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]
    check(sorted((t["Key"], t["Value"]) for t in tags) == [("Name", "web-1"), ("env", "test")], "create_tags/describe_tags")
    found = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["web-*"]}])["Reservations"]
    check([i["InstanceId"] for r in found for i in r["Instances"]] == [instance_id], "tag filter on describe_instances")
    check(ec2.describe_security_groups(Filters=[{"Name": "tag-key", "Values": ["env"]}])["SecurityGroups"][0]["GroupId"] == sg_id, "tag filter on describe_security_groups")
    ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": "env"}])
    check(len(ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]) == 1, "delete_tags")

    web = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
    ec2.modify_instance_attribute(InstanceId=instance_id, Groups=[sg_id, web])
    [inst] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    check(sorted(x["GroupId"] for x in inst["SecurityGroups"]) == sorted([sg_id, web]), "modify_instance_attribute changes the groups")

    t = ec2.run_instances(ImageId=image_id, MinCount=2, MaxCount=2, ClientToken="seed-token")
    again = ec2.run_instances(ImageId=image_id, MinCount=2, MaxCount=2, ClientToken="seed-token")
    check(t["ReservationId"] == again["ReservationId"] and len(t["Instances"]) == 2, "ClientToken makes RunInstances idempotent")
    check([x["GroupName"] for x in t["Instances"][0]["SecurityGroups"]] == ["default"], "without groups an instance joins default")

    check([r["RegionName"] for r in ec2.describe_regions()["Regions"]] == ["flowgate-1"], "describe_regions")
    check(len(ec2.describe_availability_zones()["AvailabilityZones"]) >= 1, "describe_availability_zones")
    check(ec2.describe_images(ImageIds=[image_id])["Images"][0]["ImageId"] == image_id, "describe_images")

    out = ec2.terminate_instances(InstanceIds=[instance_id])
    check(out["TerminatingInstances"][0]["CurrentState"]["Name"] == "shutting-down", "terminate_instances")
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    ec2.delete_security_group(GroupName="web")
    check("web" not in [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]], "delete_security_group by name")


main(scenario)
