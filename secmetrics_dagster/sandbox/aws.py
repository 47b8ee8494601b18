"""AWS in the sandbox: moto's AWS emulation, run inside this process, answers behind the sandbox's /aws/ routes.

Point boto3 at `<sandbox url>/aws` (AWS_ENDPOINT_URL). On its first AWS request (or `POST /aws-sandbox/seed`,
which does it in the background) a Sandbox resets moto and seeds it from its seed and AwsVolume: IAM users,
EC2 instances and EBS volumes in two regions, S3 buckets with assorted security settings. moto's state is
process-wide, so one process serves one Sandbox's AWS at a time (the last one asked re-seeds it, unless the
data it wants is loaded and was only read since). Faults apply by route name: `aws.query` (EC2, IAM, STS:
POST) and `aws.s3`, rendered as AWS error XML. moto keeps what it serves in memory: this vendor is for
behaviour, not volume. moto is a test dependency; without it the routes answer 501. moto's IAM enforcement
(/moto-api/reset-auth) does not work through /aws: signatures cover the path, which the proxy shortens.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

from .records import check_volume
from .server import Request, Response, Router, Vendor, VendorContext, register_vendor

REGIONS = ("us-east-1", "eu-west-1")
_IMAGE_ID = "ami-0c55b159cbfafe1f0"
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}
_SKIP_REPLY_HEADERS = {"content-type", "content-length", "server", "date", "connection", "transfer-encoding"}


@dataclass(frozen=True)
class AwsVolume:
    """How much AWS the sandbox seeds; each field is also a CLI flag (--aws-users, ...)."""

    users: int = 5
    instances_per_region: int = 3
    volumes_per_region: int = 2  # besides the instances' root volumes
    buckets: int = 4

    def __post_init__(self) -> None:
        names = ("users", "instances_per_region", "volumes_per_region", "buckets")
        check_volume(self, names, most=500, why=" (moto holds it all in memory)")


class _Moto:
    """The process's one moto application, the (seed, volume) its data was seeded from, and whether it still is.

    Re-seeding costs a second or two (moto rebuilds its backends), so a Sandbox asking for the data another
    one left untouched (only reads went through) gets it as it is: that equals a fresh seed.
    """

    lock = threading.Lock()  # moto is not written for concurrent requests; the sandbox serializes them
    app: Any = None
    loaded: Optional[tuple[int, AwsVolume]] = None
    owner: Optional[object] = None  # the Sandbox that used it last
    dirty = False  # a request that may have changed it went through since seeding


_READ_ACTION = re.compile(rb"(?:^|&)Action=(?:Describe|List|Get)[A-Z]")


def _is_read(request: Request) -> bool:
    if request.route == "aws.s3":
        return request.method in ("GET", "HEAD")
    return bool(_READ_ACTION.search(request.body or b""))


def _moto_app() -> Any:
    if _Moto.app is None:
        # moto's EC2 loads its catalogue of thousands of public AMIs into every region's backend, at every reset:
        # half of a re-seed's CPU. Nothing here reads images (the instances name one id, which moto does not check),
        # so the sandbox goes without (moto/settings.py ec2_load_default_amis; MOTO_EC2_LOAD_DEFAULT_AMIS=true
        # brings them back). A departure from AWS, where DescribeImages lists Amazon's public AMIs
        # (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeImages.html).
        os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        _Moto.app = DomainDispatcherApplication(create_backend_app)
    return _Moto.app


def _wsgi(app: Any, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
    from werkzeug.test import Client

    parts = urlsplit(url)
    response = Client(app).open(
        parts.path or "/",
        base_url=f"{parts.scheme}://{parts.netloc}",
        method=method,
        headers=[(k, v) for k, v in headers.items() if k.lower() not in _HOP_HEADERS],
        data=body,
        query_string=parts.query,
    )
    try:
        return response.status_code, dict(response.headers.items()), response.get_data()
    finally:
        response.close()


class _Raw(io.BytesIO):
    def stream(self, **_kwargs: Any):
        yield self.getvalue()


def _seeding_session(app: Any) -> Any:
    """A boto3 session whose requests go straight into moto's WSGI app (no socket, no real AWS)."""
    from botocore.awsrequest import AWSResponse

    from ..collection.boto import boto3_session  # parses the service models once per process, not per re-seed

    session = boto3_session(
        aws_access_key_id="sandbox-seed", aws_secret_access_key="sandbox-seed", region_name=REGIONS[0]
    )

    def send(request: Any, **_kwargs: Any) -> AWSResponse:
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in request.headers.items()}
        status, reply_headers, content = _wsgi(app, request.method, request.url, headers, body or b"")
        return AWSResponse(request.url, status, reply_headers, _Raw(content))

    session.events.register("before-send", send)
    return session


def _iam_user(name: str) -> Any:
    """moto's in-memory IAM user (this process's moto, the default account)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    return iam_backends[DEFAULT_ACCOUNT_ID]["global"].get_user(name)


def _seed(seed: int, volume: AwsVolume) -> None:
    from botocore.config import Config

    app = _moto_app()
    _wsgi(app, "POST", "http://127.0.0.1/moto-api/reset", {}, b"")
    session = _seeding_session(app)
    rng = random.Random(f"{seed}:aws")

    path_style = Config(s3={"addressing_style": "path"})

    def client(service: str, region: str = REGIONS[0]) -> Any:
        return session.client(service, region_name=region, endpoint_url="http://127.0.0.1", config=path_style)

    iam = client("iam")
    now = datetime.now(UTC).replace(tzinfo=None)  # moto keeps naive UTC datetimes
    for i in range(volume.users):
        name = f"user-{i:02d}"
        iam.create_user(UserName=name, Tags=[{"Key": "team", "Value": rng.choice(["platform", "security", "data"])}])
        if i % 2 == 0:
            iam.create_login_profile(UserName=name, Password=f"Sandbox-{rng.getrandbits(48):x}!")
            if i % 3 != 1:
                # Two console users in three have a virtual MFA device: the credential report's mfa_active
                # (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_getting-report.html).
                serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"]["SerialNumber"]
                iam.enable_mfa_device(
                    UserName=name, SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
                )
        if i % 3 != 2:
            iam.create_access_key(UserName=name)
            # access_key_1_last_rotated is the key's creation date (same page). Neither AWS nor moto lets a key be
            # created in the past, so the sandbox ages moto's own record: most keys within 90 days, some older.
            age_days = rng.choice([3, 20, 45, 80]) if i % 4 != 3 else rng.choice([120, 400])
            _iam_user(name).access_keys[0].create_date = now - timedelta(days=age_days)
    for region in REGIONS:
        ec2 = client("ec2", region)
        if region == REGIONS[1]:
            ec2.enable_ebs_encryption_by_default()
        for i in range(volume.instances_per_region):
            # Any AMI id will do for moto; describing its catalogue to pick one costs seconds.
            ec2.run_instances(
                ImageId=_IMAGE_ID,
                MinCount=1,
                MaxCount=1,
                InstanceType=rng.choice(["t3.micro", "t3.small", "m5.large"]),
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": f"{region}-web-{i}"}]}
                ],
            )
        for i in range(volume.volumes_per_region):
            encrypted = i % 2 == 0
            extra = (
                {"KmsKeyId": f"arn:aws:kms:{region}:123456789012:key/{uuid.UUID(int=rng.getrandbits(128))}"}
                if encrypted
                else {}
            )
            ec2.create_volume(
                AvailabilityZone=f"{region}a",
                Size=rng.choice([8, 20, 100]),
                VolumeType="gp3",
                Encrypted=encrypted,
                **extra,
            )
    for i in range(volume.buckets):
        region = REGIONS[i % len(REGIONS)]
        name = f"sandbox-{seed}-bucket-{i}"
        s3 = client("s3", region)
        config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=name, **config)
        if i % 2 == 0:
            s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
        if i % 4 in (0, 1):
            rule = (
                {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/aws/s3"}
                if i % 4 == 1
                else {"SSEAlgorithm": "AES256"}
            )
            s3.put_bucket_encryption(
                Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]}
            )
        if i % 4 == 3:  # the classic mistake: a bucket policy granting the world read access
            s3.put_bucket_policy(
                Bucket=name,
                Policy=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": "*",
                                "Action": "s3:GetObject",
                                "Resource": f"arn:aws:s3:::{name}/*",
                            }
                        ],
                    }
                ),
            )


# ------------------------------------------------------------------------------------------- errors

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([a-z0-9-]+)/aws4_request")
_REQUEST_ID = "7a62c49f-347e-4fc4-9331-6e8eEXAMPLE"


def _service(request: Request) -> str:
    found = _CREDENTIAL_SCOPE.search(request.headers.get("Authorization") or "")
    return found.group(1) if found else ("s3" if request.route == "aws.s3" else "ec2")


def aws_error(status: int, request: Request) -> Response:
    """An injected fault in the shape each AWS protocol uses (codes and messages from the AWS API references).

    Everything else under /aws/ is moto's own answer (moto emulates the services; its fidelity is moto's). Shapes:
    S3 <Error><Code><Message><RequestId> (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html), EC2
    <Response><Errors><Error>...<RequestID> (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html),
    IAM/STS <ErrorResponse><Error><Type><Code><Message></Error><RequestId> (the query protocol's CommonErrors,
    https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html). The fault kind fixes the status, so some
    pairings are not what AWS sends: S3 answers InvalidAccessKeyId with 403 (never 401) and throttles with 503 SlowDown
    (not 429); EC2's RequestLimitExceeded and IAM's Throttling are not documented with 429 either (their real statuses
    were not checked here). botocore's retry modes recognise these throttling codes by name, so the collector's retry
    path is exercised either way.
    """
    service = _service(request)
    if service == "s3":
        code, message = {
            401: ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."),
            403: ("AccessDenied", "Access Denied"),
            404: ("NoSuchBucket", "The specified bucket does not exist"),
            429: ("SlowDown", "Please reduce your request rate."),
            500: ("InternalError", "We encountered an internal error. Please try again."),
            503: ("SlowDown", "Please reduce your request rate."),
        }.get(status, ("InternalError", f"HTTP {status}"))
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>{_REQUEST_ID[:16]}</RequestId></Error>"
        )
        return Response(status, body=body.encode(), content_type="application/xml")
    if service == "ec2":
        code, message = {
            401: ("AuthFailure", "AWS was not able to validate the provided access credentials"),
            403: ("UnauthorizedOperation", "You are not authorized to perform this operation."),
            404: ("InvalidAction", "The action is not valid for this web service."),
            429: ("RequestLimitExceeded", "Request limit exceeded."),
            500: ("InternalError", "An internal error has occurred"),
            503: ("Unavailable", "The server is overloaded and can't handle the request."),
        }.get(status, ("InternalError", f"HTTP {status}"))
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>{_REQUEST_ID}</RequestID></Response>"
        )
        return Response(status, body=body.encode(), content_type="text/xml;charset=UTF-8")
    code, message = {  # IAM, STS: the query protocol's ErrorResponse
        401: ("InvalidClientTokenId", "The security token included in the request is invalid."),
        403: (
            "AccessDenied",
            f"User: arn:aws:iam::123456789012:user/sandbox is not authorized to perform: {service}:*",
        ),
        404: ("NoSuchEntity", "The request was rejected because it referenced an entity that does not exist."),
        429: ("Throttling", "Rate exceeded"),
        500: ("ServiceFailure", "The request processing has failed because of an unknown error."),
        503: ("ServiceUnavailable", "Service is unable to handle request."),
    }.get(status, ("ServiceFailure", f"HTTP {status}"))
    body = (
        f'<ErrorResponse xmlns="https://{service}.amazonaws.com/doc/2010-05-08/"><Error><Type>'
        f"{'Receiver' if status >= 500 else 'Sender'}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{_REQUEST_ID}</RequestId></ErrorResponse>"
    )
    return Response(status, body=body.encode(), content_type="text/xml")


# --------------------------------------------------------------------------------------------- routes


def install(router: Router, context: VendorContext, volume: AwsVolume) -> None:
    owner = object()  # this Sandbox, in _Moto.owner

    def ensure_seeded() -> None:
        """Under _Moto.lock: make moto hold this Sandbox's data."""
        if _Moto.loaded != (context.seed, volume) or (_Moto.dirty and _Moto.owner is not owner):
            _seed(context.seed, volume)
            _Moto.loaded, _Moto.dirty = (context.seed, volume), False
        _Moto.owner = owner

    def seed_in_background() -> None:
        try:
            with _Moto.lock:
                ensure_seeded()
        except Exception:  # noqa: BLE001 - the first AWS request seeds again and reports the cause
            pass

    def seed_route(request: Request) -> Response:
        # Seeding takes seconds; a client about to start (make demo) lets it overlap with its own start-up.
        threading.Thread(target=seed_in_background, daemon=True, name="sandbox-aws-seed").start()
        return Response(202, {"status": "seeding"})

    def forward(request: Request) -> Response:
        try:
            with _Moto.lock:
                ensure_seeded()
                _Moto.dirty = _Moto.dirty or not _is_read(request)
                host = request.headers.get("Host") or "127.0.0.1"
                path = request.path[len("/aws") :] or "/"
                query = urlencode(request.query)
                status, headers, body = _wsgi(
                    _moto_app(),
                    request.method,
                    f"http://{host}{path}" + (f"?{query}" if query else ""),
                    dict(request.headers.items()),
                    request.body,
                )
        except ImportError as exc:
            return Response(501, {"error": f"the sandbox's AWS needs moto (pip install 'moto[server]'): {exc}"})
        content_type = headers.get("Content-Type") or headers.get("content-type") or "application/xml"
        reply_headers = {k: v for k, v in headers.items() if k.lower() not in _SKIP_REPLY_HEADERS}
        if request.method == "HEAD":
            # HeadObject's Content-Length is the object's size, not that of the (empty) answer: S3 clients read it
            # (boto3's download_file sizes its ranged GETs by it). https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html
            reply_headers.update({k: v for k, v in headers.items() if k.lower() == "content-length"})
        return Response(status, body=body, content_type=content_type, headers=reply_headers)

    router.add("POST", r"/aws-sandbox/seed", "aws.seed", seed_route)
    router.add("POST", r"/aws/?", "aws.query", forward, aws_error)
    router.add("GET", r"/aws/?", "aws.s3", forward, aws_error)
    # S3's REST API over path-style URLs (/aws/<bucket>/<key>): HEAD is HeadBucket and HeadObject, which boto3's
    # transfer manager and any S3 store call before reading (https://docs.aws.amazon.com/AmazonS3/latest/API/
    # API_HeadBucket.html, API_HeadObject.html); POST carries CreateMultipartUpload (?uploads) and
    # CompleteMultipartUpload (?uploadId=), PUT the objects and their parts (API_UploadPart.html).
    for method in ("GET", "HEAD", "PUT", "POST", "DELETE"):
        router.add(method, r"/aws/(?P<bucket>[^/]+)(?P<key>/.*)?", "aws.s3", forward, aws_error)


register_vendor(Vendor("aws", AwsVolume, install))
