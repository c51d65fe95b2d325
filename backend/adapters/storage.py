"""Object storage over the S3 protocol (aioboto3): AWS S3, MinIO, or moto's server in tests.

Clips stream in: bytes are buffered only up to one part (``multipart_threshold``), then sent
as S3 multipart upload parts, so a clip is never held whole in memory.

Retention: every object is written under ``clips/`` with the tag ``kuzet-retention=expirable``; an
incident on legal hold has its objects re-tagged ``held`` (``retag``). ``kuzet storage prepare``
installs a lifecycle rule that expires ``expirable`` objects some days after the sweeper would
have deleted them (a safety net behind it), beside the one that aborts multipart uploads left
unfinished. No rule matches ``held``, so held footage is never expired by the bucket.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aioboto3
from aiobotocore.session import AioSession
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.loaders import Loader, create_loader

from backend.core.config import Settings
from backend.core.failures import DependencyUnavailable, ObjectMissing
from backend.core.logging import get_logger

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import (
        CompletedPartTypeDef,
        LifecycleRuleTypeDef,
        ObjectIdentifierTypeDef,
        TaggingTypeDef,
    )

log = get_logger(__name__)
_MISSING = {"NoSuchKey", "404", "NotFound"}
_NO_BUCKET = {"404", "NoSuchBucket", "NotFound"}
_NO_LIFECYCLE = {"NoSuchLifecycleConfiguration"}

FOOTAGE_PREFIX = "clips/"  # every clip, snapshot and playable MP4 lives under it
RETENTION_TAG = "kuzet-retention"
EXPIRABLE = "expirable"  # the bucket's lifecycle rule may expire it
HELD = "held"  # an incident on legal hold: no lifecycle rule matches
EXPIRY_RULE = "kuzet-footage-expiry"
DELETE_CHUNK = 1000  # S3 DeleteObjects takes at most 1000 keys

__all__ = [
    "EXPIRABLE",
    "FOOTAGE_PREFIX",
    "HELD",
    "DeleteInterrupted",
    "DeleteResult",
    "ObjectMissing",
    "Storage",
    "StorageUnavailable",
    "StreamingUpload",
]


class StorageUnavailable(DependencyUnavailable):
    """Object storage cannot be reached or failed on its side (or the bucket is missing); safe to retry."""

    dependency = "storage"


@dataclass
class DeleteResult:
    """Per-key results of a delete: ``deleted`` are confirmed gone; ``failed`` maps a key to S3's error code."""

    deleted: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)


class DeleteInterrupted(StorageUnavailable):
    """Object storage went away mid-delete; ``result`` holds what was confirmed before that."""

    def __init__(self, message: str, result: DeleteResult) -> None:
        super().__init__(message)
        self.result = result


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


@functools.cache
def _loader(data_path: str | None) -> Loader:
    return create_loader(data_path)


def _botocore_session() -> AioSession:
    """A botocore session whose data loader the process shares: a new session would parse botocore's
    endpoint and S3 model files again (about half of a client's 90 ms of CPU); the shared loader keeps
    them parsed. What is loaded is read-only, as within one session."""
    session = AioSession()
    session.register_component("data_loader", _loader(session.get_config_variable("data_path")))
    return session


class Storage:
    """One long-lived S3 client; use as ``async with Storage(settings) as storage``."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.part_size = settings.s3_multipart_threshold
        self._session = aioboto3.Session(
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            region_name=settings.s3_region,
            botocore_session=_botocore_session(),
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
        longest = max(settings.rejected_footage_retention_s, settings.incident_footage_retention_s)
        self.expiry_days = math.ceil(longest / 86400) + settings.footage_lifecycle_margin_days
        self.tagging = f"{RETENTION_TAG}={EXPIRABLE}"

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
            await self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, Tagging=self.tagging
            )
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
                keys: list[ObjectIdentifierTypeDef] = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if keys:
                    await self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                    deleted += len(keys)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, prefix) from exc
        return deleted

    async def delete_keys(self, keys: Sequence[str]) -> DeleteResult:
        """Delete these objects (DeleteObjects, 1000 keys a request) and say, key by key, which are gone.

        A key S3 reports as an error (access denied, an internal error for that key) is in ``failed``
        and still exists; deleting a key that does not exist succeeds (S3 semantics). If storage
        goes away mid-way, ``DeleteInterrupted`` carries what was confirmed before."""
        result = DeleteResult()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), DELETE_CHUNK):
            chunk = unique[start : start + DELETE_CHUNK]
            try:
                response = await self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": False},
                )
            except (ClientError, BotoCoreError) as exc:
                raise DeleteInterrupted(str(_translate(exc)), result) from exc
            result.deleted.update(d["Key"] for d in response.get("Deleted", []) if "Key" in d)
            for error in response.get("Errors", []):
                if "Key" in error:
                    result.failed[error["Key"]] = str(error.get("Code", "error"))
        result.deleted.difference_update(result.failed)
        return result

    async def retag(self, prefix: str, value: str) -> int:
        """Set ``kuzet-retention`` to ``value`` on every object under ``prefix``; how many objects."""
        count = 0
        tagging: TaggingTypeDef = {"TagSet": [{"Key": RETENTION_TAG, "Value": value}]}
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    await self.client.put_object_tagging(Bucket=self.bucket, Key=obj["Key"], Tagging=tagging)
                    count += 1
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, prefix) from exc
        return count

    async def tag_of(self, key: str) -> str | None:
        """The object's ``kuzet-retention`` tag (None when it has none)."""
        try:
            response = await self.client.get_object_tagging(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, key) from exc
        return next((t["Value"] for t in response.get("TagSet", []) if t.get("Key") == RETENTION_TAG), None)

    def footage_expiry_rule(self) -> dict[str, Any]:
        """The rule ``prepare`` keeps on the bucket: objects under ``clips/`` tagged ``expirable`` expire
        the longest footage retention plus ``KUZET_FOOTAGE_LIFECYCLE_MARGIN_DAYS`` after upload."""
        return {
            "ID": EXPIRY_RULE,
            "Status": "Enabled",
            "Filter": {"And": {"Prefix": FOOTAGE_PREFIX, "Tags": [{"Key": RETENTION_TAG, "Value": EXPIRABLE}]}},
            "Expiration": {"Days": self.expiry_days},
        }

    async def lifecycle(self) -> list[dict[str, Any]]:
        """The bucket's lifecycle rules as S3 returns them ([] when it has none)."""
        try:
            response = await self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in _NO_LIFECYCLE:
                return []
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc
        return [dict(rule) for rule in response.get("Rules", [])]

    async def ensure_footage_expiry(self) -> bool:
        """Set the footage expiry rule unless it is there as the settings say; keep every other rule."""
        wanted = self.footage_expiry_rule()
        current = await self.lifecycle()
        if [_rule_key(r) for r in current if r.get("ID") == EXPIRY_RULE] == [_rule_key(wanted)]:
            return False
        rules = [r for r in current if r.get("ID") != EXPIRY_RULE] + [wanted]
        try:
            await self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket,
                LifecycleConfiguration={"Rules": rules},  # type: ignore[typeddict-item]
            )
        except ClientError as exc:
            if _code(exc) not in _LIFECYCLE_UNSUPPORTED:
                raise _translate(exc) from exc
            # A server without lifecycle rules: the sweeper alone deletes footage past retention.
            log.warning("storage_lifecycle_unsupported", rule=EXPIRY_RULE, error=_code(exc))
            return False
        except BotoCoreError as exc:
            raise _translate(exc) from exc
        return True

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
        self._parts: list[CompletedPartTypeDef] = []

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
                    Bucket=self.storage.bucket,
                    Key=self.key,
                    ContentType=self.content_type,
                    Tagging=self.storage.tagging,
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
                MultipartUpload={"Parts": self._parts},
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


def _rule_key(rule: dict[str, Any]) -> tuple[object, ...]:
    """What makes two lifecycle rules the same, whatever extra fields S3 echoes back."""
    filt = rule.get("Filter") or {}
    both = filt.get("And") or {}
    prefix = both.get("Prefix", filt.get("Prefix", rule.get("Prefix", "")))
    tags = both.get("Tags") or ([filt["Tag"]] if "Tag" in filt else [])
    return (
        rule.get("ID"),
        rule.get("Status"),
        prefix or "",
        tuple(sorted((t["Key"], t["Value"]) for t in tags)),
        (rule.get("Expiration") or {}).get("Days"),
        (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation"),
    )


async def _bucket_step(storage: Storage) -> bool:
    return await storage.ensure_bucket()


# A clip upload cut off mid-way (a camera's connection dropped, an API process killed) leaves parts
# that are billed but are no object, so the orphan sweeper never sees them: S3 drops them after a day.
# Footage expiry is a rule of its own (``_footage_expiry_step``): it leaves held footage alone by its tag.
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


async def _footage_expiry_step(storage: Storage) -> bool:
    return await storage.ensure_footage_expiry()


# (name, step): each returns True when it changed something.
PREPARE_STEPS: list[tuple[str, Callable[[Storage], Awaitable[bool]]]] = [
    ("bucket created", _bucket_step),
    ("lifecycle rule added: abort incomplete uploads after 1 day", _lifecycle_step),
    ("lifecycle rule set: expire footage tagged expirable (behind the retention sweeper)", _footage_expiry_step),
]
