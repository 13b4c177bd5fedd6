"""S3 (and S3-compatible) sources: every object under the prefix, through boto3.

Credentials come only from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``;
without them requests are unsigned (a public bucket), so no credential file or instance-metadata
service is ever consulted. Digests: the ETag is an MD5 of the bytes only for a single-part upload
without KMS encryption (no '-' in it); ``ChecksumSHA256`` is checked when the object has a whole-object one.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    FlexibleChecksumError,
    ReadTimeoutError,
)

from inference_policy.model_source import S3_REVISION_DIR, S3Source
from inference_runtime.sources.store import (
    CHECKSUM,
    ERROR,
    MAX_FILES,
    NOT_FOUND,
    UNAUTHORISED,
    UNREACHABLE,
    DownloadError,
    RemoteFile,
    safe_name,
)

# Their DEBUG lines carry request headers (the access key id, signatures): never in our logs.
for _name in ("boto3", "botocore", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

_MD5 = re.compile(r"^[0-9a-f]{32}$")
_NOT_FOUND = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}
_UNAUTHORISED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "403",
    "401",
}


class S3Fetch:
    """Lists the objects under an S3 prefix and streams each one."""

    def __init__(self, source: S3Source, env: Mapping[str, str]) -> None:
        self.source = source
        self.uri = source.uri
        self.revision = S3_REVISION_DIR
        key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        signed = bool(key_id and secret)
        config = Config(
            signature_version=None if signed else UNSIGNED,
            connect_timeout=30,
            read_timeout=120,
            retries={"max_attempts": 3, "mode": "standard"},
            # S3-compatible stores (MinIO, Ceph, ...) behind a service name answer path-style requests;
            # virtual-hosted ones would need a DNS name per bucket.
            s3={"addressing_style": "path"} if source.endpoint else None,
        )
        session = boto3.session.Session(
            aws_access_key_id=key_id if signed else None,
            aws_secret_access_key=secret if signed else None,
            aws_session_token=(env.get("AWS_SESSION_TOKEN") or None) if signed else None,
            region_name=source.region,
        )
        self._client = session.client("s3", endpoint_url=source.endpoint, config=config)

    def listing(self) -> list[RemoteFile]:
        files = []
        with self._errors("the listing"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.source.bucket, Prefix=self.source.prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj.get("Key")
                    if not isinstance(key, str) or not key.startswith(self.source.prefix):
                        raise DownloadError(
                            ERROR, f"{self.uri}: the listing has an object outside the prefix"
                        )
                    rest = key[len(self.source.prefix) :]
                    if (rest == "" or rest.endswith("/")) and obj.get("Size") == 0:
                        continue  # a "folder" placeholder object (what consoles create), the prefix's own too
                    size = obj.get("Size")
                    name = safe_name(rest, self.uri)
                    if type(size) is not int or size < 0:
                        raise DownloadError(ERROR, f"{self.uri}: the listing gives no size for '{name}'")
                    files.append(RemoteFile(name=name, size=size))
                    if len(files) > MAX_FILES:
                        raise DownloadError(
                            ERROR, f"{self.uri}: more than {MAX_FILES} objects under the prefix"
                        )
        if not files:
            raise DownloadError(NOT_FOUND, f"{self.uri}: no objects under this prefix")
        return files

    @contextlib.contextmanager
    def stream(self, remote: RemoteFile, offset: int) -> Iterator[tuple[int, Iterator[bytes], RemoteFile]]:
        key = self.source.prefix + remote.name
        with self._errors(f"'{remote.name}'"):
            head = self._client.head_object(Bucket=self.source.bucket, Key=key, ChecksumMode="ENABLED")
            checked = _with_digests(remote, head, self.uri)
            args: dict[str, Any] = {"Bucket": self.source.bucket, "Key": key}
            if offset:
                args["Range"] = f"bytes={offset}-"
            answer = self._client.get_object(**args)
            start = offset if answer.get("ContentRange") else 0
            body = answer["Body"]
            try:
                yield start, body.iter_chunks(1 << 20), checked
            finally:
                body.close()

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Map boto3's exceptions to a category and a message of our own (no keys, no signatures)."""
        uri = self.uri
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _NOT_FOUND or status == 404:
                thing = "no such bucket" if code == "NoSuchBucket" else f"{what} was not found"
                raise DownloadError(NOT_FOUND, f"{uri}: {thing}") from None
            if code in _UNAUTHORISED or status in (401, 403):
                raise DownloadError(
                    UNAUTHORISED,
                    f"{uri}: the store refused {what} ({code or status}); check the AWS_* credentials",
                ) from None
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable"):
                raise DownloadError(
                    UNREACHABLE, f"{uri}: the store answered {code or status}; try again later"
                ) from None
            raise DownloadError(ERROR, f"{uri}: the store answered {code or status} for {what}") from None
        except FlexibleChecksumError:
            # boto3 checks the object's own CRC/SHA checksum (stored at upload) as the body is read.
            raise DownloadError(
                CHECKSUM, f"{uri}: {what} does not match the checksum the store holds for it"
            ) from None
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError):
            raise DownloadError(UNREACHABLE, f"{uri}: cannot reach the store ({what})") from None
        except BotoCoreError as exc:
            raise DownloadError(
                ERROR, f"{uri}: the S3 client failed on {what} ({type(exc).__name__})"
            ) from None


def _with_digests(remote: RemoteFile, head: Mapping[str, Any], uri: str) -> RemoteFile:
    etag = str(head.get("ETag", "")).strip('"').lower()
    encrypted = str(head.get("ServerSideEncryption", "")).startswith("aws:kms") or head.get(
        "SSECustomerAlgorithm"
    )
    md5 = etag if _MD5.match(etag) and not encrypted else None
    sha256 = None
    checksum = head.get("ChecksumSHA256")
    if (
        isinstance(checksum, str)
        and "-" not in checksum
        and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
    ):
        with contextlib.suppress(ValueError):
            raw = base64.b64decode(checksum, validate=True)
            if len(raw) == 32:
                sha256 = raw.hex()
    if head.get("ContentLength") not in (None, remote.size):
        raise DownloadError(ERROR, f"{uri}: '{remote.name}' changed size since it was listed")
    return RemoteFile(name=remote.name, size=remote.size, sha256=sha256, md5=md5)
