"""Object storage over the S3 protocol (aioboto3): AWS S3, MinIO, or moto's server in tests.

Clips stream in: bytes are buffered only up to one part (``multipart_threshold``), then sent
as S3 multipart upload parts, so a clip is never held whole in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from backend.core.config import Settings
from backend.core.failures import DependencyUnavailable, ObjectMissing
from backend.core.logging import get_logger

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import LifecycleRuleTypeDef

log = get_logger(__name__)
_MISSING = {"NoSuchKey", "404", "NotFound"}
_NO_BUCKET = {"404", "NoSuchBucket", "NotFound"}


__all__ = ["ObjectMissing", "Storage", "StorageUnavailable", "StreamingUpload"]


class StorageUnavailable(DependencyUnavailable):
    """Object storage cannot be reached or failed on its side (or the bucket is missing); safe to retry."""

    dependency = "storage"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _translate(exc: BaseException, key: str | None = None) -> Exception:
    if isinstance(exc, ClientError):
        code = _code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "NoSuchBucket":
            return StorageUnavailable("object storage has no bucket (run `kuzet storage prepare`)")
        if code in _MISSING:
            return ObjectMissing(f"object {key!r} not found")
        if status >= 500 or code in {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}:
            return StorageUnavailable(f"object storage error {code}")
        return StorageUnavailable(f"object storage refused the request ({code})")
    return StorageUnavailable(f"object storage unreachable ({type(exc).__name__})")


class Storage:
    """One long-lived S3 client; use as ``async with Storage(settings) as storage``."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.part_size = settings.s3_multipart_threshold
        self._session = aioboto3.Session(
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            region_name=settings.s3_region,
        )
        self._client_kwargs: dict[str, Any] = {
            "endpoint_url": settings.s3_endpoint_url,
            "config": Config(
                s3={"addressing_style": "path"},
                connect_timeout=2,
                read_timeout=15,
                retries={"max_attempts": 2, "mode": "standard"},
                signature_version="s3v4",
            ),
        }
        self._cm: Any = None
        self._client: S3Client | None = None

    async def __aenter__(self) -> Self:
        self._cm = self._session.client("s3", **self._client_kwargs)
        self._client = await self._cm.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._cm is not None:
            await self._cm.__aexit__(exc_type, exc, tb)
        self._client = None

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("Storage used outside its context")
        return self._client

    async def ensure_bucket(self) -> bool:
        """Create the bucket unless it exists; True when it was created."""
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) not in _NO_BUCKET:
                raise _translate(exc) from exc
            try:
                await self.client.create_bucket(Bucket=self.bucket)
            except ClientError as create_exc:
                if _code(create_exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise _translate(create_exc) from create_exc
                return False
            return True
        except BotoCoreError as exc:
            raise _translate(exc) from exc
        return False

    async def prepare(self) -> list[str]:
        """Make object storage ready (idempotent); returns what was changed.

        Each step (``PREPARE_STEPS``: the bucket, its lifecycle rule) checks before it changes, so
        running it again changes nothing.
        """
        changed = []
        for name, step in PREPARE_STEPS:
            if await step(self):
                changed.append(name)
        return changed

    async def check(self) -> None:
        """Raise StorageUnavailable unless the bucket answers (a missing bucket says so)."""
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in _NO_BUCKET:
                raise StorageUnavailable(
                    f"bucket {self.bucket!r} does not exist (run `kuzet storage prepare`)"
                ) from exc
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc

    def writer(self, key: str, content_type: str) -> StreamingUpload:
        return StreamingUpload(self, key, content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        try:
            await self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, key) from exc

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        await self.put_bytes(key, await asyncio.to_thread(path.read_bytes), content_type)

    async def get_bytes(self, key: str) -> bytes:
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, key) from exc

    async def download(self, key: str, path: Path, *, chunk: int = 1024 * 1024) -> int:
        """Stream an object to a local file; return its size."""
        size = 0
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            async with body:
                out = await asyncio.to_thread(path.open, "wb")
                try:
                    while data := await body.read(chunk):
                        await asyncio.to_thread(out.write, data)
                        size += len(data)
                finally:
                    await asyncio.to_thread(out.close)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, key) from exc
        return size

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; return how many."""
        deleted = 0
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if keys:
                    await self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})  # type: ignore[typeddict-item]
                    deleted += len(keys)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, prefix) from exc
        return deleted

    async def presign_get(self, key: str, *, expires_s: int = 300) -> str:
        url: str = await self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )
        return url


class StreamingUpload:
    """Write bytes as they arrive; small objects become one PUT, large ones a multipart upload."""

    def __init__(self, storage: Storage, key: str, content_type: str) -> None:
        self.storage = storage
        self.key = key
        self.content_type = content_type
        self.size = 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= self.storage.part_size:
            await self._flush_part()

    async def _flush_part(self) -> None:
        client = self.storage.client
        try:
            if self._upload_id is None:
                created = await client.create_multipart_upload(
                    Bucket=self.storage.bucket, Key=self.key, ContentType=self.content_type
                )
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            part = await client.upload_part(
                Bucket=self.storage.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=bytes(self._buffer),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, self.key) from exc
        self._parts.append({"ETag": part["ETag"], "PartNumber": number})
        self._buffer.clear()

    async def finish(self) -> int:
        """Complete the upload; return the object's size."""
        if self._upload_id is None:
            await self.storage.put_bytes(self.key, bytes(self._buffer), self.content_type)
            self._buffer.clear()
            return self.size
        if self._buffer:
            await self._flush_part()
        try:
            await self.storage.client.complete_multipart_upload(
                Bucket=self.storage.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, self.key) from exc
        return self.size

    async def abort(self) -> None:
        """Best effort: drop a half-done multipart upload (the orphan sweeper covers the rest)."""
        self._buffer.clear()
        if self._upload_id is None:
            return
        try:
            await self.storage.client.abort_multipart_upload(
                Bucket=self.storage.bucket, Key=self.key, UploadId=self._upload_id
            )
        except (ClientError, BotoCoreError):
            return


async def _bucket_step(storage: Storage) -> bool:
    return await storage.ensure_bucket()


# A clip upload cut off mid-way (a camera's connection dropped, an API process killed) leaves parts
# that are billed but are no object, so the orphan sweeper never sees them: S3 drops them after a day.
# Clips themselves never expire by a bucket rule: legal holds are per incident, decided in the database.
ABORT_UPLOADS_RULE_ID = "kuzet-abort-incomplete-uploads"
_ABORT_UPLOADS_RULE: LifecycleRuleTypeDef = {
    "ID": ABORT_UPLOADS_RULE_ID,
    "Filter": {"Prefix": ""},
    "Status": "Enabled",
    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
}
# Servers that refuse or do not keep this action (MinIO cleans stale uploads up by itself).
_LIFECYCLE_UNSUPPORTED = {"MalformedXML", "NotImplemented", "InvalidRequest", "InvalidArgument"}


async def _lifecycle_step(storage: Storage) -> bool:
    """Add the abort-incomplete-uploads rule, keeping any rule an operator set beside it."""
    try:
        current = await storage.client.get_bucket_lifecycle_configuration(Bucket=storage.bucket)
        rules: list[Any] = list(current.get("Rules", []))
    except ClientError as exc:
        if _code(exc) != "NoSuchLifecycleConfiguration":
            raise _translate(exc) from exc
        rules = []
    except BotoCoreError as exc:
        raise _translate(exc) from exc
    if any(rule.get("ID") == ABORT_UPLOADS_RULE_ID for rule in rules):
        return False
    try:
        await storage.client.put_bucket_lifecycle_configuration(
            Bucket=storage.bucket, LifecycleConfiguration={"Rules": [*rules, _ABORT_UPLOADS_RULE]}
        )
    except ClientError as exc:
        if _code(exc) not in _LIFECYCLE_UNSUPPORTED:
            raise _translate(exc) from exc
        log.warning("storage_lifecycle_unsupported", rule=ABORT_UPLOADS_RULE_ID, error=_code(exc))
        return False
    except BotoCoreError as exc:
        raise _translate(exc) from exc
    return True


# (name, step): each returns True when it changed something.
PREPARE_STEPS: list[tuple[str, Callable[[Storage], Awaitable[bool]]]] = [
    ("bucket created", _bucket_step),
    ("lifecycle rule added: abort incomplete uploads after 1 day", _lifecycle_step),
]
