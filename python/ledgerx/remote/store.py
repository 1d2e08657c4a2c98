"""The object-store client: obstore (Python bindings of the Rust `object_store` crate).

Why obstore: one small wheel with no Python dependencies; the HTTP work runs in Rust with the
GIL released, so a shipper thread does not slow the writers of the same process; create-only
puts (`mode="create"`, sent as `If-None-Match: *`) are part of its API and come back as a typed
`AlreadyExistsError`; connection errors and 5xx answers are retried with exponential backoff and
jitter inside the client. Credentials come from the standard AWS environment variables
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, ...); when they
are not set and boto3 is installed, from boto3's chain (~/.aws/credentials and config, SSO,
instance roles).

Object names (docs/scale.md): `<prefix>/roots/<root_id>/day=D/part-NNNNNN/<start>-<end>.jsonl`,
`start`/`end` the byte range of the part file (15 digits each), so names never collide across
roots and a name says exactly which bytes it holds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

from ledgerx.errors import ConfigError, LedgerError

OBJECT_RE = re.compile(
    r"roots/(?P<root>[0-9a-f]{32})/(?P<day>day=\d{4}-\d{2}-\d{2})/"
    r"(?P<part>part-\d{6})/(?P<start>\d{15})-(?P<end>\d{15})\.jsonl"
)


class RemoteError(LedgerError):
    """Object storage refused or failed a request (after retries), or holds unexpected data."""


# obstore runs its requests on one process-wide async runtime, which does not survive fork():
# a child that makes a request after its parent made one would hang. Refuse it instead.
_USED_BY: list[int] = []


def check_not_forked() -> None:
    """Call before each request: raises RemoteError in a forked child of a process that has
    already used object storage."""
    pid = os.getpid()
    if not _USED_BY:
        _USED_BY.append(pid)
    elif _USED_BY[0] != pid:
        raise RemoteError(
            "object storage was used before this process forked, and its client cannot be used "
            "after fork(): ship from a fresh process (multiprocessing 'spawn', or a subprocess)"
        )


@dataclass(frozen=True)
class ObjectName:
    root_id: str
    day: str  # "day=YYYY-MM-DD"
    part: str  # "part-NNNNNN"
    start: int
    end: int

    @property
    def rel(self) -> str:
        """The part file's path relative to events/ on the shipping host."""
        return f"{self.day}/{self.part}.jsonl"

    @property
    def key(self) -> str:
        return (
            f"roots/{self.root_id}/{self.day}/{self.part}/{self.start:015d}-{self.end:015d}.jsonl"
        )

    @classmethod
    def parse(cls, key: str) -> ObjectName | None:
        m = OBJECT_RE.fullmatch(key)
        if m is None:
            return None
        return cls(m["root"], m["day"], m["part"], int(m["start"]), int(m["end"]))


def check_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix`; anything else is a clear error."""
    u = urlparse(url)
    if u.scheme != "s3" or not u.netloc:
        raise ConfigError(f"expected s3://bucket/prefix, got {url!r}")
    return u.netloc, u.path.strip("/")


def open_store(url: str, endpoint_url: str | None = None, *, timeout_s: float = 60.0) -> Any:
    """An obstore S3Store rooted at `s3://bucket/prefix`."""
    check_url(url)
    try:
        from obstore.store import S3Store
    except ImportError:
        raise RemoteError("object storage needs the s3 extra: pip install 'ledgerx[s3]'") from None
    kw: dict[str, Any] = {
        "client_options": {"timeout": timedelta(seconds=timeout_s)},
        "retry_config": {
            "max_retries": 5,
            "retry_timeout": timedelta(seconds=120),
            "backoff": {"init_backoff": timedelta(milliseconds=100), "base": 2},
        },
    }
    if endpoint_url:
        kw["endpoint"] = endpoint_url
        if endpoint_url.startswith("http://"):
            kw["client_options"]["allow_http"] = True
    if not os.environ.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
        kw["region"] = "us-east-1"
    provider = _boto3_provider()
    if provider is not None:
        kw["credential_provider"] = provider
    try:
        return S3Store.from_url(url, **kw)
    except Exception as e:  # noqa: BLE001 - obstore raises its own config errors
        raise RemoteError(f"cannot open {url}: {_one_line(e)}") from None


def _boto3_provider() -> Any:
    """boto3's credential chain (config files, SSO, roles) when the environment has no keys."""
    if os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_SKIP_SIGNATURE"):
        return None
    try:
        import boto3  # noqa: F401
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        return None
    return Boto3CredentialProvider()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:500] or type(e).__name__
