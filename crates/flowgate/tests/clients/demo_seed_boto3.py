"""The seed scenario through boto3 against a running `flowgate demo`
(crates/flowgate/tests/demo.rs starts it as the README does): an instance
running a web server from its UserData, in a new security group that lets
nothing in; an Elastic IP the external host calls through the public
gateway; tcp 80 authorized, after which the page comes back from the
instance's private address (the switch's 1:1 NAT) and the instance's
console shows the external host as the caller.

The instance is left running on purpose: stopping the demo must remove it.
Its id and namespace are printed as `instance <id> <namespace>`."""
import os

from common import boto3_client, check, main
from netcheck import eventually, http_get, namespaces, never, ns_of, run_in

EXTERNAL = os.environ["FLOWGATE_EXTERNAL_NS"]
EXTERNAL_IP = os.environ["FLOWGATE_EXTERNAL_IP"]

USER_DATA = """#!/bin/sh
exec python3 -c '
import http.server as h
class Page(h.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello from %s\\n" % self.connection.getsockname()[0].encode())
h.HTTPServer(("", 80), Page).serve_forever()'
"""


def scenario():
    ec2 = boto3_client("A")
    images = [i["ImageId"] for i in ec2.describe_images()["Images"]]
    check(os.environ["FLOWGATE_IMAGE_ID"] in images, f"the demo's image is listed ({images})")

    sg_id = ec2.create_security_group(GroupName="Test Group", Description="Description of Test Group")["GroupId"]
    r = ec2.run_instances(
        ImageId=os.environ["FLOWGATE_IMAGE_ID"], InstanceType="m1.small", MinCount=1, MaxCount=1,
        SecurityGroupIds=[sg_id], UserData=USER_DATA,
    )
    instance_id = r["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ns = ns_of(instance_id)
    check(ns in namespaces(), f"{instance_id} runs as network namespace {ns}")
    eventually(f"the web server of {instance_id} listens", lambda: ":80 " in run_in(ns, "ss", "-ltn").stdout)

    addr = ec2.allocate_address(Domain="vpc")
    eip = addr["PublicIp"]
    ec2.associate_address(AllocationId=addr["AllocationId"], InstanceId=instance_id)
    [inst] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    private_ip = inst["PrivateIpAddress"]
    check(inst.get("PublicIpAddress") == eip, f"{instance_id} shows its Elastic IP {eip} (private {private_ip})")

    never("the web server answers through the Elastic IP before any rule", lambda: http_get(EXTERNAL, eip))
    check(True, "a new group lets nothing in: no answer on tcp 80")

    ec2.authorize_security_group_ingress(GroupId=sg_id, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0")
    page = eventually("an HTTP GET through the Elastic IP", lambda: http_get(EXTERNAL, eip), timeout=30)
    check(page == f"hello from {private_ip}\n", f"the external host gets the instance's page through {eip}: {page!r}")
    console = eventually(
        "the web server's log in the console output",
        lambda: EXTERNAL_IP in ec2.get_console_output(InstanceId=instance_id).get("Output", ""),
    )
    check(console, f"the instance saw the external host ({EXTERNAL_IP}) as the caller")
    print(f"instance {instance_id} {ns}", flush=True)


if __name__ == "__main__":
    main(scenario)
