"""Helpers for the storage suite (tests/it/storage.rs and tests/storage/run.sh).

Run with the emulator venv's python (it has boto3):

  helpers.py azure-sas ACCOUNT KEY PERMISSIONS          -> an account SAS token (stdlib only)
  helpers.py s3-iam-setup ENDPOINT BUCKET               -> export lines for a moto server that
                                                            enforces IAM (see run.sh)
  helpers.py s3-iam-probe ENDPOINT BUCKET KEY_ID SECRET -> checks that the IAM-enforcing moto behaves
                                                            as the permission tests assume; exits 1
                                                            with a message saying what differs
  helpers.py s3-multipart-uploads ENDPOINT BUCKET PREFIX -> JSON list of in-progress uploads
  helpers.py sts-server DIR                              -> an HTTPS AWS STS stand-in for the web
                                                            identity test; writes DIR/sts.port
"""

import base64
import datetime
import hashlib
import hmac
import json
import sys
import urllib.parse


def azure_sas(account, key, permissions):
    """An account SAS for the blob service (version 2019-12-12, no encryption scope)."""
    version = "2019-12-12"
    expiry = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    services, resource_types, start, ip, protocol = "b", "sco", "", "", "https,http"
    string_to_sign = "\n".join(
        [account, permissions, services, resource_types, start, expiry, ip, protocol, version, ""]
    )
    signature = base64.b64encode(
        hmac.new(base64.b64decode(key), string_to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    query = {
        "sv": version,
        "ss": services,
        "srt": resource_types,
        "sp": permissions,
        "se": expiry,
        "spr": protocol,
        "sig": signature,
    }
    return urllib.parse.urlencode(query)


def _clients(endpoint, key_id="testing", secret="testing", token=None):
    import boto3

    kwargs = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )
    return boto3.client("s3", **kwargs), boto3.client("iam", **kwargs)


def s3_iam_setup(endpoint, bucket):
    """On a moto server started with INITIAL_NO_AUTH_ACTION_COUNT=4: a bucket and a read-only
    user (GetObject + ListBucket, no PutObject). Uses exactly four unauthenticated actions;
    from then on moto enforces IAM policies."""
    s3, iam = _clients(endpoint)
    s3.create_bucket(Bucket=bucket)
    iam.create_user(UserName="landfall-readonly")
    read_only = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }
    iam.put_user_policy(UserName="landfall-readonly", PolicyName="read-only", PolicyDocument=json.dumps(read_only))
    key = iam.create_access_key(UserName="landfall-readonly")["AccessKey"]
    print(f"export LANDFALL_TEST_S3_IAM_ENDPOINT={endpoint}")
    print(f"export LANDFALL_TEST_S3_IAM_BUCKET={bucket}")
    print(f"export LANDFALL_TEST_S3_READONLY_KEY_ID={key['AccessKeyId']}")
    print(f"export LANDFALL_TEST_S3_READONLY_SECRET={key['SecretAccessKey']}")


def s3_iam_probe(endpoint, bucket, key_id, secret):
    """The permission tests assume the read-only user of s3_iam_setup may list and read but not
    write. Some moto releases deny ListObjects/ListObjectsV2 although s3:ListBucket is allowed
    on the bucket ARN (5.2.6 does): the tests would then fail with an unrelated assertion. Probe
    each assumption once, before the suite, and say which one the emulator breaks."""
    import botocore.exceptions
    import moto

    s3, _ = _clients(endpoint, key_id, secret)
    broken = []

    def code_of(call):
        try:
            call()
            return "ok"
        except botocore.exceptions.ClientError as error:
            return error.response.get("Error", {}).get("Code", "?")

    for name, call, want in [
        ("ListObjectsV2 with s3:ListBucket allowed", lambda: s3.list_objects_v2(Bucket=bucket, Prefix="p/"), "ok"),
        ("ListObjects with s3:ListBucket allowed", lambda: s3.list_objects(Bucket=bucket), "ok"),
        ("PutObject without s3:PutObject", lambda: s3.put_object(Bucket=bucket, Key="p/x", Body=b"x"), "AccessDenied"),
    ]:
        got = code_of(call)
        if got != want:
            broken.append(f"{name}: expected {want}, moto answered {got}")
    if broken:
        sys.exit(
            f"the IAM-enforcing S3 emulator (moto {moto.__version__}) does not behave as the "
            "permission tests assume:\n  " + "\n  ".join(broken)
            + "\nPin the moto release in tests/tools/emulators.txt that does (see tests/tools/README.md)."
        )
    print(f"s3 iam probe: moto {moto.__version__} lists with s3:ListBucket and denies PutObject, as the tests assume")


def s3_multipart_uploads(endpoint, bucket, prefix):
    s3, _ = _clients(endpoint)
    response = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    uploads = [{"key": u["Key"], "upload_id": u["UploadId"]} for u in response.get("Uploads", [])]
    print(json.dumps(uploads))


STS_ROLE_ARN = "arn:aws:iam::123456789012:role/landfall-writer"
STS_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJsYW5kZmFsbCJ9.c2ln"
STS_RESPONSE = """<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleWithWebIdentityResult><Credentials>
<AccessKeyId>ASIALANDFALLIRSATEST</AccessKeyId><SecretAccessKey>irsa-secret-access-key</SecretAccessKey>
<SessionToken>irsa-session-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>
</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"""


def sts_server(directory):
    """AWS STS AssumeRoleWithWebIdentity over HTTPS (object_store refuses plain http for STS,
    and moto cannot route its unsigned query-string request). It answers only the request
    IRSA makes, with the role and token the test uses; anything else gets 400."""
    import http.server
    import os
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(directory, "sts.crt"), os.path.join(directory, "sts.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            ok = (
                query.get("Action") == "AssumeRoleWithWebIdentity"
                and query.get("RoleArn") == STS_ROLE_ARN
                and query.get("WebIdentityToken", "").strip() == STS_TOKEN
                and query.get("RoleSessionName") == "landfall-test"
            )
            body = (STS_RESPONSE if ok else "<Error><Code>InvalidIdentityToken</Code></Error>").encode()
            self.send_response(200 if ok else 400)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with open(os.path.join(directory, "sts.port.tmp"), "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(os.path.join(directory, "sts.port.tmp"), os.path.join(directory, "sts.port"))
    server.serve_forever()


def main(argv):
    command, args = argv[1], argv[2:]
    if command == "azure-sas":
        print(azure_sas(*args))
    elif command == "s3-iam-setup":
        s3_iam_setup(*args)
    elif command == "s3-iam-probe":
        s3_iam_probe(*args)
    elif command == "s3-multipart-uploads":
        s3_multipart_uploads(*args)
    elif command == "sts-server":
        sts_server(*args)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv)
