"""One negative test for every EC2 error code flowgate answers with, each
checked for EC2's code and HTTP status. The server runs with a quota of 3
Elastic IPs per account; account R has a read-only key."""
import os

from common import boto3_client, check, expect_error, expect_raw_error, main, signed_v4

NONE_ID = "0" * 17


def scenario():
    ec2 = boto3_client("A")
    raw = boto3_client("A", validate=False)
    image_id = os.environ["FLOWGATE_IMAGE_ID"]

    sg = ec2.create_security_group(GroupName="g1", Description="g1")["GroupId"]
    web = {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[web])

    expect_error("InvalidParameterValue", 400, ec2.authorize_security_group_ingress, GroupId=sg,
                 IpPermissions=[{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    expect_error("InvalidParameterValue", 400, ec2.authorize_security_group_ingress, GroupId=sg,
                 IpPermissions=[{"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "IpRanges": [{"CidrIp": "10.0.0.1/8"}]}])
    expect_error("InvalidParameterValue", 400, ec2.describe_addresses, Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    expect_error("InvalidParameterValue", 400, ec2.allocate_address, Domain="moon")
    expect_error("InvalidParameterCombination", 400, ec2.associate_address,
                 PublicIp="203.0.113.9", AllocationId="eipalloc-" + NONE_ID, InstanceId="i-" + NONE_ID)
    expect_error("InvalidParameterCombination", 400, ec2.run_instances, ImageId=image_id, MinCount=2, MaxCount=2, PrivateIpAddress="10.0.0.50")
    expect_error("MissingParameter", 400, raw.create_security_group, GroupName="no-description")
    expect_error("MissingParameter", 400, raw.run_instances, MinCount=1, MaxCount=1)
    body, headers = signed_v4({"Action": "LaunchRockets", "Version": "2016-11-15"})
    expect_raw_error("InvalidAction", 400, body, headers, "for an unknown action")
    expect_error("InvalidGroup.NotFound", 400, ec2.describe_security_groups, GroupNames=["nope"])
    expect_error("InvalidGroup.NotFound", 400, ec2.delete_security_group, GroupId="sg-" + NONE_ID)
    expect_error("InvalidGroup.NotFound", 400, ec2.run_instances, ImageId=image_id, MinCount=1, MaxCount=1, SecurityGroups=["nope"])
    expect_error("InvalidGroup.Duplicate", 400, ec2.create_security_group, GroupName="g1", Description="again")
    expect_error("InvalidGroupId.Malformed", 400, ec2.describe_security_groups, GroupIds=["sg-xyz"])
    expect_error("InvalidGroupId.Malformed", 400, ec2.delete_security_group, GroupId="sg-123")
    expect_error("InvalidPermission.Duplicate", 400, ec2.authorize_security_group_ingress, GroupId=sg, IpPermissions=[web])
    expect_error("InvalidPermission.NotFound", 400, ec2.revoke_security_group_ingress, GroupId=sg,
                 IpPermissions=[{"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    expect_error("InvalidPermission.NotFound", 400, ec2.revoke_security_group_ingress, GroupId=sg, SecurityGroupRuleIds=["sgr-" + NONE_ID])
    expect_error("InvalidAddress.NotFound", 400, ec2.release_address, PublicIp="203.0.113.250")
    expect_error("InvalidAddress.NotFound", 400, ec2.describe_addresses, PublicIps=["203.0.113.250"])
    expect_error("InvalidAllocationID.NotFound", 400, ec2.release_address, AllocationId="eipalloc-" + NONE_ID)
    expect_error("InvalidAssociationID.NotFound", 400, ec2.disassociate_address, AssociationId="eipassoc-" + NONE_ID)
    expect_error("InvalidInstanceID.NotFound", 400, ec2.terminate_instances, InstanceIds=["i-" + NONE_ID])
    expect_error("InvalidInstanceID.NotFound", 400, ec2.describe_instances, InstanceIds=["i-" + NONE_ID])
    expect_error("InvalidInstanceID.Malformed", 400, ec2.describe_instances, InstanceIds=["i-bogus"])
    expect_error("InvalidAMIID.NotFound", 400, ec2.run_instances, ImageId="ami-" + NONE_ID, MinCount=1, MaxCount=1)
    expect_error("UnsupportedOperation", 400, ec2.authorize_security_group_ingress, GroupId=sg,
                 IpPermissions=[{"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])

    # AddressLimitExceeded: the server's quota is 3.
    allocations = [ec2.allocate_address(Domain="vpc")["AllocationId"] for _ in range(3)]
    expect_error("AddressLimitExceeded", 400, ec2.allocate_address, Domain="vpc")

    # DependencyViolation: a group in use by an instance, and one referenced by another group's rule.
    inst = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, SecurityGroupIds=[sg])["Instances"][0]["InstanceId"]
    expect_error("DependencyViolation", 400, ec2.delete_security_group, GroupId=sg)
    src = ec2.create_security_group(GroupName="source", Description="source")["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": src}]}])
    expect_error("DependencyViolation", 400, ec2.delete_security_group, GroupId=src)
    default = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    expect_error("CannotDelete", 400, ec2.delete_security_group, GroupId=default)

    # Address association rules.
    ec2.get_waiter("instance_running").wait(InstanceIds=[inst], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    inst2 = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.associate_address(AllocationId=allocations[0], InstanceId=inst)
    expect_error("Resource.AlreadyAssociated", 400, ec2.associate_address, AllocationId=allocations[0], InstanceId=inst2)
    expect_error("InvalidIPAddress.InUse", 400, ec2.release_address, AllocationId=allocations[0])
    ec2.associate_address(AllocationId=allocations[0], InstanceId=inst2, AllowReassociation=True)
    check(ec2.describe_addresses(AllocationIds=[allocations[0]])["Addresses"][0]["InstanceId"] == inst2, "AllowReassociation moves the address")

    # DryRun on mutating actions: DryRunOperation (412), and nothing happens.
    expect_error("DryRunOperation", 412, ec2.allocate_address, Domain="vpc", DryRun=True)
    expect_error("DryRunOperation", 412, ec2.create_security_group, GroupName="dry", Description="dry", DryRun=True)
    expect_error("DryRunOperation", 412, ec2.run_instances, ImageId=image_id, MinCount=1, MaxCount=1, DryRun=True)
    expect_error("DryRunOperation", 412, ec2.terminate_instances, InstanceIds=[inst], DryRun=True)
    check("dry" not in [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]], "DryRun changed nothing")

    # UnauthorizedOperation: a read-only key may describe but not change.
    ro = boto3_client("R")
    ro.describe_addresses()
    expect_error("UnauthorizedOperation", 403, ro.allocate_address, Domain="vpc")
    expect_error("UnauthorizedOperation", 403, ro.create_security_group, GroupName="x", Description="x", DryRun=True)


main(scenario)
