"""Helpers shared by the client scripts: where flowgate is, which keys to
use, and a small independent SigV4/SigV2 signer for requests that the real
clients refuse to send (bad, expired or missing signatures, unknown actions).

The scripts are run by crates/flowgate/tests/clients.rs with FLOWGATE_PORT
and the keys of accounts it created with `flowgate admin` in the
environment (or, against a running `flowgate demo`, with FLOWGATE_ENDPOINT
instead of FLOWGATE_PORT). Every check prints "ok <what>"; a failed check
raises.
"""
import base64
import datetime
import hashlib
import hmac
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

ENDPOINT = os.environ.get("FLOWGATE_ENDPOINT") or f"http://127.0.0.1:{os.environ['FLOWGATE_PORT']}"
PORT = urllib.parse.urlsplit(ENDPOINT).port
REGION = os.environ.get("FLOWGATE_REGION", "flowgate-1")


def account(name="A"):
    """(access key id, secret) of the account the test harness created."""
    return os.environ[f"FLOWGATE_{name}_KEY"], os.environ[f"FLOWGATE_{name}_SECRET"]


def boto3_client(name="A", validate=True, endpoint=None):
    """An EC2 client of account `name`, of flowgate at ENDPOINT unless
    `endpoint` names another (a node of several)."""
    import boto3
    from botocore.config import Config

    key, secret = account(name)
    return boto3.client(
        "ec2",
        endpoint_url=endpoint or ENDPOINT,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(parameter_validation=validate, retries={"total_max_attempts": 1}),
    )


def check(condition, what):
    if not condition:
        raise AssertionError(f"check failed: {what}")
    print(f"ok {what}", flush=True)


def expect_error(code, status, fn, *args, **kwargs):
    """Calls a boto3 method and checks it fails with EC2's code and HTTP status."""
    from botocore.exceptions import ClientError

    try:
        fn(*args, **kwargs)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        got_status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        check(got == code and got_status == status, f"{code} ({status}) from {fn.__name__}: got {got} ({got_status})")
        return e
    raise AssertionError(f"{fn.__name__} succeeded; expected {code}")


# ---------------------------------------------------------------- raw requests


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def amz_now(offset_seconds=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_seconds)
    return t.strftime("%Y%m%dT%H%M%SZ")


def sigv4_headers(body, key, secret, amz_date=None, drop=None):
    """Headers of a SigV4-signed POST of `body` (bytes), signed as AWS documents it."""
    amz_date = amz_date or amz_now()
    date = amz_date[:8]
    host = f"127.0.0.1:{PORT}"
    content_type = "application/x-www-form-urlencoded; charset=utf-8"
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:{content_type}\nhost:{host}\nx-amz-date:{amz_date}\n",
            "content-type;host;x-amz-date",
            _sha256(body),
        ]
    )
    scope = f"{date}/{REGION}/ec2/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{_sha256(canonical.encode())}"
    k = _hmac(("AWS4" + secret).encode(), date)
    for part in (REGION, "ec2", "aws4_request"):
        k = _hmac(k, part)
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
    if drop:
        auth = ", ".join(p for p in auth.split(", ") if not p.startswith(drop))
    return {"Content-Type": content_type, "X-Amz-Date": amz_date, "Authorization": auth}


def sigv2_params(params, key, secret, timestamp=None, method="HmacSHA256"):
    """Parameters of a SigV2-signed request, as boto 2 builds them."""
    p = dict(params)
    p.update(
        {
            "AWSAccessKeyId": key,
            "SignatureVersion": "2",
            "SignatureMethod": method,
            "Timestamp": timestamp
            or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(str(v), safe='-_.~')}" for k, v in sorted(p.items())
    )
    to_sign = f"POST\n127.0.0.1:{PORT}\n/\n{query}"
    digest = hashlib.sha256 if method == "HmacSHA256" else hashlib.sha1
    p["Signature"] = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(), digest).digest()).decode()
    return p


def post(body, headers=None):
    """POSTs a form body; returns (status, parsed XML root)."""
    if isinstance(body, dict):
        body = urllib.parse.urlencode(body, quote_via=urllib.parse.quote).encode()
    req = urllib.request.Request(ENDPOINT + "/", data=body, method="POST", headers=headers or {})
    req.add_header("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, ET.fromstring(r.read())
    except urllib.error.HTTPError as e:
        return e.code, ET.fromstring(e.read())


def error_code(root):
    node = root.find("./Errors/Error/Code")
    return node.text if node is not None else None


def expect_raw_error(code, status, body, headers=None, what=""):
    got_status, root = post(body, headers)
    got = error_code(root)
    check(got == code and got_status == status, f"{code} ({status}) {what}: got {got} ({got_status})")


def signed_v4(params, name="A", **kwargs):
    key, secret = account(name)
    body = urllib.parse.urlencode(params, quote_via=urllib.parse.quote).encode()
    return body, sigv4_headers(body, key, secret, **kwargs)


def main(fn):
    try:
        fn()
    except Exception as e:  # report and fail the test
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        raise
    print("all checks passed", flush=True)
