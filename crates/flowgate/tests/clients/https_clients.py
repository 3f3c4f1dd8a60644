"""The API over HTTPS with the real clients: boto3 and the AWS CLI trust the
test's CA (verify= / --ca-bundle) and allocate and list an address; without
the CA they refuse the server, and plain HTTP to the HTTPS port gets no
answer.

FLOWGATE_ENDPOINT is https://127.0.0.1:PORT; FLOWGATE_CA_BUNDLE the CA
certificate that signed the server's.
"""
import http.client
import ipaddress
import json
import os
import subprocess
import sys

from common import ENDPOINT, PORT, REGION, account, check, main

AWS = os.path.join(os.path.dirname(sys.executable), "aws")
CA_BUNDLE = os.environ["FLOWGATE_CA_BUNDLE"]


def ec2(verify):
    import boto3
    from botocore.config import Config

    key, secret = account("A")
    return boto3.client(
        "ec2",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        verify=verify,
        config=Config(retries={"total_max_attempts": 1}),
    )


def aws(*args, ca_bundle=CA_BUNDLE):
    key, secret = account("A")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION=REGION)
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_CA_BUNDLE", None)
    bundle = ["--ca-bundle", ca_bundle] if ca_bundle else []
    return subprocess.run(
        [AWS, "--endpoint-url", ENDPOINT, *bundle, "--output", "json", "ec2", *args],
        capture_output=True, text=True, env=env, timeout=60,
    )


def aws_ok(*args):
    p = aws(*args)
    if p.returncode != 0:
        raise AssertionError(f"aws ec2 {' '.join(args)} failed: {p.stderr}")
    return json.loads(p.stdout)


def scenario():
    from botocore.exceptions import SSLError

    check(ENDPOINT.startswith("https://"), f"the endpoint is HTTPS: {ENDPOINT}")
    pool = ipaddress.ip_network(os.environ["FLOWGATE_POOL_CIDR"])

    client = ec2(verify=CA_BUNDLE)
    allocated = client.allocate_address(Domain="vpc")
    check(ipaddress.ip_address(allocated["PublicIp"]) in pool, f"boto3 AllocateAddress over HTTPS: {allocated['PublicIp']}")
    listed = [a["AllocationId"] for a in client.describe_addresses()["Addresses"]]
    check(listed == [allocated["AllocationId"]], f"boto3 DescribeAddresses over HTTPS: {listed}")

    second = aws_ok("allocate-address", "--domain", "vpc")["AllocationId"]
    check(second.startswith("eipalloc-"), f"aws --ca-bundle ec2 allocate-address: {second}")
    listed = sorted(a["AllocationId"] for a in aws_ok("describe-addresses")["Addresses"])
    check(listed == sorted([allocated["AllocationId"], second]), f"aws --ca-bundle ec2 describe-addresses lists both: {listed}")

    # The clients check the certificate: without the test's CA (only the
    # system's), they refuse the server.
    try:
        ec2(verify=True).describe_addresses()
        raise AssertionError("boto3 accepted a certificate of a CA it does not trust")
    except SSLError as e:
        check("CERTIFICATE_VERIFY_FAILED" in str(e), "boto3 without the CA refuses the server's certificate")
    p = aws("describe-addresses", ca_bundle=None)
    check(p.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in p.stderr, "the AWS CLI without --ca-bundle refuses it too")

    # No plain-HTTP fallback on the HTTPS port: the server never answers.
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    try:
        connection.request("POST", "/", body=b"Action=DescribeRegions", headers={"Content-Type": "application/x-www-form-urlencoded"})
        answer = connection.getresponse()
        raise AssertionError(f"plain HTTP to the HTTPS port got an answer: {answer.status}")
    except (http.client.HTTPException, ConnectionError) as e:
        check(True, f"plain HTTP to the HTTPS port gets no answer ({type(e).__name__})")
    finally:
        connection.close()


main(scenario)
