"""The seed scenario through the AWS CLI (`aws ec2 ...`), each result checked."""
import ipaddress
import json
import os
import subprocess
import sys

from common import ENDPOINT, REGION, account, check, main

AWS = os.path.join(os.path.dirname(sys.executable), "aws")


def aws(*args, expect_ok=True):
    key, secret = account("A")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION=REGION)
    env.pop("AWS_PROFILE", None)
    p = subprocess.run(
        [AWS, "--endpoint-url", ENDPOINT, "--output", "json", "ec2", *args],
        capture_output=True, text=True, env=env, timeout=60,
    )
    if expect_ok and p.returncode != 0:
        raise AssertionError(f"aws ec2 {' '.join(args)} failed: {p.stderr}")
    return json.loads(p.stdout) if p.stdout.strip() else p


def scenario():
    image_id = os.environ["FLOWGATE_IMAGE_ID"]
    pool = ipaddress.ip_network(os.environ["FLOWGATE_POOL_CIDR"])
    sg_id = aws("create-security-group", "--group-name", "Test Group", "--description", "Description of Test Group")["GroupId"]
    check(sg_id.startswith("sg-"), f"create-security-group gave {sg_id}")
    r = aws("run-instances", "--image-id", image_id, "--instance-type", "m1.small", "--count", "1", "--security-group-ids", sg_id)
    instance_id = r["Instances"][0]["InstanceId"]
    check(r["Instances"][0]["State"]["Name"] == "pending", f"run-instances gave {instance_id}")
    aws("wait", "instance-running", "--instance-ids", instance_id)
    check(True, "wait instance-running")
    addr = aws("allocate-address", "--domain", "vpc")
    check(ipaddress.ip_address(addr["PublicIp"]) in pool, f"allocate-address gave {addr['PublicIp']}")
    aws("associate-address", "--instance-id", instance_id, "--allocation-id", addr["AllocationId"])
    [a] = aws("describe-addresses", "--public-ips", addr["PublicIp"])["Addresses"]
    check(a.get("InstanceId") == instance_id, "associate-address")
    aws("disassociate-address", "--public-ip", addr["PublicIp"])
    [a] = aws("describe-addresses", "--allocation-ids", addr["AllocationId"])["Addresses"]
    check("InstanceId" not in a, "disassociate-address")
    aws("release-address", "--allocation-id", addr["AllocationId"])
    check(aws("describe-addresses")["Addresses"] == [], "release-address")
    aws("authorize-security-group-ingress", "--group-id", sg_id, "--protocol", "tcp", "--port", "80", "--cidr", "0.0.0.0/0")
    aws("authorize-security-group-ingress", "--group-name", "Test Group", "--protocol", "tcp", "--port", "22", "--cidr", "10.0.0.0/24")
    [g] = aws("describe-security-groups", "--group-ids", sg_id)["SecurityGroups"]
    got = sorted((p["IpProtocol"], p["FromPort"], p["IpRanges"][0]["CidrIp"]) for p in g["IpPermissions"])
    check(got == [("tcp", 22, "10.0.0.0/24"), ("tcp", 80, "0.0.0.0/0")], f"authorize-security-group-ingress: {got}")
    aws("revoke-security-group-ingress", "--group-id", sg_id, "--protocol", "tcp", "--port", "22", "--cidr", "10.0.0.0/24")
    [g] = aws("describe-security-groups", "--group-names", "Test Group")["SecurityGroups"]
    check(len(g["IpPermissions"]) == 1, "revoke-security-group-ingress")
    p = aws("delete-security-group", "--group-id", sg_id, expect_ok=False)
    check(p.returncode != 0 and "DependencyViolation" in p.stderr, "delete-security-group of a group in use: DependencyViolation")
    aws("create-tags", "--resources", instance_id, "--tags", "Key=Name,Value=web-1")
    found = aws("describe-instances", "--filters", "Name=tag:Name,Values=web-1")["Reservations"]
    check(found[0]["Instances"][0]["InstanceId"] == instance_id, "create-tags and a tag filter")
    aws("terminate-instances", "--instance-ids", instance_id)
    aws("wait", "instance-terminated", "--instance-ids", instance_id)
    aws("delete-security-group", "--group-id", sg_id)
    check(True, "terminate-instances, then delete-security-group")


main(scenario)
