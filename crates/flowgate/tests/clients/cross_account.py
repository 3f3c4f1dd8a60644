"""Per-account isolation: nothing of account A is visible to or changeable
by account B, and B cannot reference A's groups in its rules."""
import os

from common import boto3_client, check, expect_error, main


def scenario():
    a = boto3_client("A")
    b = boto3_client("B")
    image_id = os.environ["FLOWGATE_IMAGE_ID"]
    sg = a.create_security_group(GroupName="private", Description="group of A")["GroupId"]
    addr = a.allocate_address(Domain="vpc")
    inst = a.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, SecurityGroupIds=[sg])["Instances"][0]["InstanceId"]
    a.create_tags(Resources=[inst], Tags=[{"Key": "owner", "Value": "a"}])

    check(sg not in [g["GroupId"] for g in b.describe_security_groups()["SecurityGroups"]], "B does not see A's groups")
    check(b.describe_addresses()["Addresses"] == [], "B does not see A's addresses")
    check(b.describe_instances()["Reservations"] == [], "B does not see A's instances")
    check(b.describe_tags()["Tags"] == [], "B does not see A's tags")
    check(b.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [sg]}])["SecurityGroupRules"] == [], "B does not see A's rules")

    expect_error("InvalidGroup.NotFound", 400, b.describe_security_groups, GroupIds=[sg])
    expect_error("InvalidGroup.NotFound", 400, b.delete_security_group, GroupId=sg)
    expect_error("InvalidGroup.NotFound", 400, b.authorize_security_group_ingress, GroupId=sg,
                 IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    own = b.create_security_group(GroupName="mine", Description="group of B")["GroupId"]
    expect_error("InvalidGroup.NotFound", 400, b.authorize_security_group_ingress, GroupId=own,
                 IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": sg}]}])
    expect_error("InvalidAddress.NotFound", 400, b.release_address, PublicIp=addr["PublicIp"])
    expect_error("InvalidAllocationID.NotFound", 400, b.release_address, AllocationId=addr["AllocationId"])
    expect_error("InvalidAllocationID.NotFound", 400, b.associate_address, AllocationId=addr["AllocationId"], InstanceId=inst)
    b_inst = b.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    b_addr = b.allocate_address(Domain="vpc")
    expect_error("InvalidInstanceID.NotFound", 400, b.associate_address, AllocationId=b_addr["AllocationId"], InstanceId=inst)
    expect_error("InvalidInstanceID.NotFound", 400, b.terminate_instances, InstanceIds=[inst])
    expect_error("InvalidInstanceID.NotFound", 400, b.create_tags, Resources=[inst], Tags=[{"Key": "owner", "Value": "b"}])
    expect_error("InvalidInstanceID.NotFound", 400, b.modify_instance_attribute, InstanceId=inst, Groups=[own])
    expect_error("InvalidGroup.NotFound", 400, b.modify_instance_attribute, InstanceId=b_inst, Groups=[sg])
    expect_error("InvalidGroup.NotFound", 400, b.run_instances, ImageId=image_id, MinCount=1, MaxCount=1, SecurityGroupIds=[sg])

    [g] = a.describe_security_groups(GroupIds=[sg])["SecurityGroups"]
    check(g["IpPermissions"] == [], "A's group is unchanged")
    check(a.describe_tags()["Tags"] == [{"Key": "owner", "ResourceId": inst, "ResourceType": "instance", "Value": "a"}], "A's tags are unchanged")
    check(a.describe_addresses()["Addresses"][0]["PublicIp"] == addr["PublicIp"], "A still holds its address")
    check(b_addr["PublicIp"] != addr["PublicIp"], "accounts get different addresses")


main(scenario)
