"""Authentication failures, SigV4 and SigV2: missing, incomplete, bad
(wrong secret, tampered body), unknown key, and expired signatures, each
with EC2's code and HTTP status; and well-signed raw requests that pass."""
import urllib.error
import urllib.parse

from common import (
    account, amz_now, check, error_code, expect_error, expect_raw_error, main, post, sigv2_params,
    sigv4_headers, signed_v4,
)

DESCRIBE = {"Action": "DescribeAddresses", "Version": "2016-11-15"}


def form(params):
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote).encode()


def scenario():
    key, secret = account("A")

    # Signature Version 4.
    body, headers = signed_v4(DESCRIBE)
    status, root = post(body, headers)
    check(status == 200 and error_code(root) is None, "a correctly signed SigV4 request passes")
    expect_raw_error("MissingAuthenticationToken", 401, form(DESCRIBE), {}, "without any signature")
    body, headers = signed_v4(DESCRIBE, drop="Signature=")
    expect_raw_error("IncompleteSignature", 400, body, headers, "SigV4 without Signature=")
    body = form(DESCRIBE)
    expect_raw_error("SignatureDoesNotMatch", 403, body, sigv4_headers(body, key, secret + "x"), "SigV4 with a wrong secret")
    headers = sigv4_headers(body, key, secret)
    expect_raw_error("SignatureDoesNotMatch", 403, form({**DESCRIBE, "PublicIp.1": "1.2.3.4"}), headers, "SigV4 over a tampered body")
    expect_raw_error("AuthFailure", 401, body, sigv4_headers(body, "AKIAUNKNOWNUNKNOWN00", secret), "SigV4 with an unknown key")
    expect_raw_error("RequestExpired", 400, body, sigv4_headers(body, key, secret, amz_date=amz_now(-3600)), "SigV4 signed an hour ago")
    expect_raw_error("RequestExpired", 400, body, sigv4_headers(body, key, secret, amz_date=amz_now(+3600)), "SigV4 signed an hour ahead")

    # boto3 itself with a wrong secret and an unknown key.
    import boto3
    from common import ENDPOINT, REGION

    def client(k, s):
        return boto3.client("ec2", endpoint_url=ENDPOINT, region_name=REGION, aws_access_key_id=k, aws_secret_access_key=s)

    expect_error("SignatureDoesNotMatch", 403, client(key, "wrong" + secret).describe_addresses)
    expect_error("AuthFailure", 401, client("AKIA0000000000000000", secret).describe_addresses)

    # GET with a SigV4 presigned URL made by botocore (query-string authentication).
    import urllib.request
    ec2 = client(key, secret)
    url = ec2.generate_presigned_url("describe_addresses", Params={}, ExpiresIn=60, HttpMethod="GET")
    check("X-Amz-Signature=" in url, "botocore presigned a GET URL")
    with urllib.request.urlopen(url, timeout=10) as r:
        check(r.status == 200 and b"DescribeAddressesResponse" in r.read(), "a presigned SigV4 GET passes")
    bad_url = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    try:
        urllib.request.urlopen(bad_url, timeout=10)
        raise AssertionError("a tampered presigned URL passed")
    except urllib.error.HTTPError as e:
        check(e.code == 403 and b"SignatureDoesNotMatch" in e.read(), "a tampered presigned URL: SignatureDoesNotMatch")

    # Signature Version 2 (boto 2's default).
    v2 = {"Action": "DescribeAddresses", "Version": "2014-10-01"}
    status, root = post(sigv2_params(v2, key, secret))
    check(status == 200, "a correctly signed SigV2 request (HmacSHA256) passes")
    status, root = post(sigv2_params(v2, key, secret, method="HmacSHA1"))
    check(status == 200, "a correctly signed SigV2 request (HmacSHA1) passes")
    expect_raw_error("SignatureDoesNotMatch", 403, sigv2_params(v2, key, secret + "x"), None, "SigV2 with a wrong secret")
    tampered = sigv2_params(v2, key, secret)
    tampered["Version"] = "2016-11-15"
    expect_raw_error("SignatureDoesNotMatch", 403, tampered, None, "SigV2 over tampered parameters")
    expect_raw_error("AuthFailure", 401, sigv2_params(v2, "AKIAUNKNOWNUNKNOWN00", secret), None, "SigV2 with an unknown key")
    expect_raw_error("RequestExpired", 400, sigv2_params(v2, key, secret, timestamp="2020-01-01T00:00:00Z"), None, "SigV2 with an old Timestamp")
    unsigned = sigv2_params(v2, key, secret)
    del unsigned["Signature"]
    expect_raw_error("IncompleteSignature", 400, unsigned, None, "SigV2 without Signature")

    import boto
    from boto.ec2.regioninfo import RegionInfo
    from common import PORT

    bad = boto.connect_ec2(aws_access_key_id=key, aws_secret_access_key="wrong", is_secure=False, port=PORT, path="/",
                           region=RegionInfo(name=REGION, endpoint="127.0.0.1"))
    try:
        bad.get_all_addresses()
        raise AssertionError("boto 2 with a wrong secret succeeded")
    except boto.exception.EC2ResponseError as e:
        check(e.status == 403 and e.error_code == "SignatureDoesNotMatch", "boto 2 with a wrong secret: SignatureDoesNotMatch")


main(scenario)
