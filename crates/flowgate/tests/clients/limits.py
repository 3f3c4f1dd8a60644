"""Per-account request rate limits, seen by boto3, the AWS CLI and a raw
signed request. The server runs with tiny buckets that refill only once
every ~17 minutes, so that nothing here depends on timing:
FLOWGATE_WRITE_BURST mutating and FLOWGATE_READ_BURST other requests per
account, then RequestLimitExceeded.

Account A spends its buckets; account B is unaffected.
"""
import os
import subprocess
import sys

from common import ENDPOINT, REGION, account, check, error_code, expect_error, main, post, signed_v4

WRITE_BURST = int(os.environ["FLOWGATE_WRITE_BURST"])
READ_BURST = int(os.environ["FLOWGATE_READ_BURST"])
AWS = os.path.join(os.path.dirname(sys.executable), "aws")


def ec2(name, **retries):
    """A boto3 client of account `name`. In botocore's Config,
    `total_max_attempts` counts every attempt, `max_attempts` only the
    retries (unlike AWS_MAX_ATTEMPTS and the config file's max_attempts)."""
    import boto3
    from botocore.config import Config

    key, secret = account(name)
    return boto3.client(
        "ec2", endpoint_url=ENDPOINT, region_name=REGION, aws_access_key_id=key, aws_secret_access_key=secret,
        config=Config(retries=retries or {"total_max_attempts": 1}),
    )


def scenario():
    from botocore.exceptions import ClientError

    a, b = ec2("A"), ec2("B")  # no retries: one attempt each

    # Writes: the burst passes, the next is throttled with EC2's code and
    # HTTP status, whatever the action.
    for _ in range(WRITE_BURST):
        a.allocate_address(Domain="vpc")
    check(True, f"{WRITE_BURST} writes in a burst pass")
    expect_error("RequestLimitExceeded", 503, a.allocate_address, Domain="vpc")
    expect_error("RequestLimitExceeded", 503, a.create_security_group, GroupName="web", Description="web")

    # EC2's XML, byte for byte as the clients parse it: Response/Errors/Error
    # with Code and Message, and a RequestID.
    status, root = post(*signed_v4({"Action": "AllocateAddress", "Version": "2016-11-15", "Domain": "vpc"}))
    message = root.find("./Errors/Error/Message")
    check(
        status == 503
        and root.tag == "Response"
        and error_code(root) == "RequestLimitExceeded"
        and message is not None and message.text
        and root.find("./RequestID") is not None,
        f"a raw request gets EC2's XML: {status} {root.tag} {error_code(root)}",
    )

    # Reads have their own bucket: A can still look.
    listed = a.describe_addresses()["Addresses"]
    check(len(listed) == WRITE_BURST, f"A's reads are not spent by its writes: {len(listed)} addresses listed")

    # Another account is not limited by A.
    b.allocate_address(Domain="vpc")
    check(len(b.describe_addresses()["Addresses"]) == 1, "B writes and reads while A is throttled")

    # A's read bucket: one read spent above, the rest of the burst passes.
    for _ in range(READ_BURST - 1):
        a.describe_security_groups()
    expect_error("RequestLimitExceeded", 503, a.describe_addresses)
    check(len(b.describe_security_groups()["SecurityGroups"]) == 1, "B still reads")

    # The clients' retries: boto3 and the AWS CLI treat RequestLimitExceeded
    # as throttling and retry it with backoff (here, in vain).
    retrying = ec2("A", mode="standard", total_max_attempts=3)
    try:
        retrying.allocate_address(Domain="vpc")
        raise AssertionError("a throttled account allocated an address")
    except ClientError as e:
        attempts = e.response["ResponseMetadata"].get("RetryAttempts")
        check(e.response["Error"]["Code"] == "RequestLimitExceeded" and attempts == 2, f"boto3 (standard mode, 3 attempts) retried {attempts} times")
    key, secret = account("A")
    env = dict(
        os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION=REGION,
        AWS_RETRY_MODE="standard", AWS_MAX_ATTEMPTS="2",
    )
    env.pop("AWS_PROFILE", None)
    p = subprocess.run(
        [AWS, "--endpoint-url", ENDPOINT, "ec2", "allocate-address", "--domain", "vpc"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    check(
        p.returncode != 0 and "RequestLimitExceeded" in p.stderr and "reached max retries: 1" in p.stderr,
        f"the AWS CLI retried too: {p.stderr.strip()}",
    )


main(scenario)
