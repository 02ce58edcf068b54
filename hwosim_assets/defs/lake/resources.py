"""The lake: one object store for every stage, a local folder or any S3 API.

Both backends offer the same small set of methods, so assets never know
where the lake is. Three promises hold on both:

* objects are written whole or not at all: a local write goes to a temporary
  file in the destination folder, is fsynced, then renamed over the key; an S3
  write is a single PUT or a multipart upload, aborted on failure, or by the
  next write of the same key when S3 itself was gone (see `S3Lake`);
* large files stream: nothing reads a whole file into memory (multipart parts
  of `part_size_mb`, 1 MiB copy buffers locally);
* every object written here carries its SHA-256 (S3 metadata
  `x-amz-meta-sha256`; a `user.hwosim.sha256` extended attribute locally),
  so `info()` answers size and checksum without reading the data.

Credentials for S3 come only from boto3's standard chain (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role): they are never fields
of a resource, so they never appear in Dagster config, the UI or logs.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import os
import random
import re
import shutil
import tempfile
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit, urlunsplit

import dagster as dg
import polars as pl
from pydantic import PrivateAttr

from hwosim_assets.checksums import sha256_of

CHUNK = 1 << 20  # copy and hash buffer: big enough to be fast, small enough to never matter
TMP_PREFIX = ".hwosim-tmp-"  # partial local writes; never listed as keys
SHA_XATTR = "user.hwosim.sha256"
Progress = Callable[[int], None]
"""Called with the number of bytes just sent; raising from it aborts the write."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None  # None only for objects put in the lake by other tools


class LakeKeyError(KeyError):
    """A key that is not in the lake; the message names its full URI."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0])


class LakeConfigError(RuntimeError):
    """The lake cannot be used as configured (credentials, bucket, URL)."""


MAX_KEY_BYTES = 1024  # S3's limit on a whole key (UTF-8), prefix included
MAX_PART_BYTES = 255  # a file name's limit on Linux (NAME_MAX) and most filesystems


def _show(key: str, limit: int = 80) -> str:
    """A key for an error message: whole when short, else its start and its length,
    so a hostile 5,000-character id does not swamp the message."""
    if len(key) <= limit:
        return repr(key)
    return f"{key[:limit]!r}... ({len(key.encode('utf-8', 'surrogatepass')):,} bytes)"


def check_key(key: str, prefix: bool = False) -> str:
    """Refuse keys that could escape the lake root or mean different objects
    on the two backends: absolute, `..`/`.` parts, empty parts, backslashes,
    control characters (NUL ends a C string; a newline splits a log line).
    With `prefix=True` an empty string or a trailing `/` is allowed.

    Lengths are checked here too, the same for both backends, so that a key
    built from a very long id fails with a message naming it rather than as an
    `OSError: File name too long` deep in a write (or a 400 from S3)."""
    if not isinstance(key, str) or "\\" in key or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise ValueError(
            f"invalid lake key {_show(key) if isinstance(key, str) else repr(key)}: no backslashes or control characters"
        )
    if prefix and key == "":
        return key
    body = key[:-1] if prefix and key.endswith("/") else key
    parts = body.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid lake key {_show(key)}: no leading '/', no empty, '.' or '..' parts")
    if any(p.startswith(TMP_PREFIX) for p in parts):
        raise ValueError(f"invalid lake key {_show(key)}: {TMP_PREFIX!r} is reserved")
    try:
        sizes = [len(p.encode("utf-8")) for p in parts]
    except UnicodeEncodeError:  # lone surrogates: neither S3 nor a filesystem can store them
        raise ValueError(f"invalid lake key {_show(key)}: not valid Unicode") from None
    for i, size in enumerate(sizes, start=1):
        if size > MAX_PART_BYTES:
            raise ValueError(
                f"invalid lake key {_show(key)}: its part {i} is {size:,} bytes, "
                f"more than the {MAX_PART_BYTES} a file or folder name may have"
            )
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"invalid lake key {_show(key)}: more than the {MAX_KEY_BYTES:,} bytes an S3 key may have")
    return key


def _copy_hashing(src: IO[bytes], dst: IO[bytes] | None, progress: Progress | None) -> tuple[str, int]:
    """Stream src into dst (if any) in CHUNK pieces; return (sha256 hex, size)."""
    digest, size = hashlib.sha256(), 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        if dst is not None:
            dst.write(chunk)
        size += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return digest.hexdigest(), size


class LakeResource(dg.ConfigurableResource):
    """Where HWOsim keeps raw files and tables; see the module docstring."""

    @abstractmethod
    def put_file(self, key: str, path: str | os.PathLike, progress: Progress | None = None) -> ObjectInfo:
        """Store the file at `path` under `key`, streaming."""

    @abstractmethod
    def put_fileobj(self, key: str, fileobj: IO[bytes], progress: Progress | None = None) -> ObjectInfo:
        """Store everything read from `fileobj` under `key`, streaming."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> ObjectInfo: ...

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def get_file(self, key: str, dest_path: str | os.PathLike) -> Path:
        """Copy the object to `dest_path` (created or replaced whole)."""

    @abstractmethod
    def info(self, key: str) -> ObjectInfo | None:
        """Size and SHA-256 of the object, or None when there is none."""

    @abstractmethod
    def list_keys(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with `prefix` (a plain string prefix, as on S3)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""

    @abstractmethod
    def uri(self, key: str = "") -> str:
        """Where a key or prefix lives, for logs and metadata (file:// or s3://)."""

    @abstractmethod
    def check(self) -> None:
        """Fail now, with a clear message, if the lake cannot be used."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Every run that uses the lake checks it first (folder writable; bucket reachable and
        credentials accepted): a clear error at the start, naming the setting."""
        self.check()

    def exists(self, key: str) -> bool:
        return self.info(key) is not None

    def write_parquet(self, key: str, df: pl.DataFrame) -> ObjectInfo:
        """Write through a temporary file, so the object appears whole."""
        with tempfile.TemporaryDirectory(prefix="hwosim-parquet-") as tmp:
            path = Path(tmp) / "table.parquet"
            df.write_parquet(path)
            return self.put_file(key, path)

    def read_parquet(self, key: str) -> pl.DataFrame:
        with tempfile.TemporaryDirectory(prefix="hwosim-parquet-") as tmp:
            path = self.get_file(key, Path(tmp) / "table.parquet")
            return pl.read_parquet(path, memory_map=False)


class LocalLake(LakeResource):
    """The lake in a local folder: the embedded default, and what tests use."""

    root: str

    def _path(self, key: str) -> Path:
        return Path(self.root).absolute() / check_key(key)

    def _missing(self, key: str) -> LakeKeyError:
        return LakeKeyError(f"no object {self.uri(key)} in the lake")

    def put_file(self, key, path, progress=None) -> ObjectInfo:
        with open(path, "rb") as src:
            return self.put_fileobj(key, src, progress)

    def put_fileobj(self, key, fileobj, progress=None) -> ObjectInfo:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                sha, size = _copy_hashing(fileobj, out, progress)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; lake files are plain data
            try:
                os.setxattr(tmp, SHA_XATTR, sha.encode())
            except OSError:
                pass  # no xattrs on this filesystem: info() will hash the file instead
            os.replace(tmp, dest)  # atomic: readers see the old object or the new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(dest.parent)
        return ObjectInfo(key, size, sha)

    def put_bytes(self, key, data) -> ObjectInfo:
        return self.put_fileobj(key, io.BytesIO(data))

    def read_bytes(self, key) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise self._missing(key) from None

    def get_file(self, key, dest_path) -> Path:
        dest = Path(dest_path)
        try:
            src = open(self._path(key), "rb")
            dest.parent.mkdir(parents=True, exist_ok=True)
        except (FileNotFoundError, IsADirectoryError):
            raise self._missing(key) from None
        with src, tempfile.NamedTemporaryFile(dir=dest.parent, prefix=TMP_PREFIX, delete=False) as out:
            try:
                shutil.copyfileobj(src, out, CHUNK)
            except BaseException:
                Path(out.name).unlink(missing_ok=True)
                raise
        os.replace(out.name, dest)
        return dest

    def read_parquet(self, key) -> pl.DataFrame:
        try:
            return pl.read_parquet(self._path(key), memory_map=False)
        except FileNotFoundError:
            raise self._missing(key) from None

    def info(self, key) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            sha = os.getxattr(path, SHA_XATTR).decode()
        except OSError:
            sha = sha256_of(path)  # written by another tool, or no xattr support
        return ObjectInfo(key, path.stat().st_size, sha)

    def list_keys(self, prefix="") -> list[str]:
        check_key(prefix, prefix=True)
        root = Path(self.root).absolute()
        # walk only the deepest folder the prefix names, then filter by string prefix
        start = root / prefix.rsplit("/", 1)[0] if "/" in prefix else root
        if not start.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(TMP_PREFIX)]
            rel = Path(dirpath).relative_to(root).as_posix()
            for name in filenames:
                key = name if rel == "." else f"{rel}/{name}"
                if not name.startswith(TMP_PREFIX) and key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key="") -> str:
        check_key(key, prefix=True)
        base = Path(self.root).absolute().as_uri()
        return f"{base}/{key}" if key else base

    def check(self) -> None:
        root = Path(self.root).absolute()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LakeConfigError(f"cannot create the lake folder {root} (HWOSIM_LAKE_URL): {e}") from e
        if not os.access(root, os.W_OK):
            raise LakeConfigError(f"the lake folder {root} is not writable (HWOSIM_LAKE_URL)")


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the folder that holds the new name."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_NO_CREDENTIALS = (
    "no AWS credentials for {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(or AWS_PROFILE, or run with an instance role)"
)

DEFAULT_RETRY_SECONDS = 60.0  # HWOSIM_LAKE_RETRY_SECONDS's default (settings.py)
BACKOFF_FIRST_S = 1.0  # first pause between whole-operation attempts; doubles each time
BACKOFF_MAX_S = 10.0  # longest pause, so a lake that is back is noticed within ~10 s
CONNECT_TIMEOUT_S = 10.0  # botocore waits 60 s by default: against a host that drops packets, per attempt

_log = dg.get_dagster_logger("hwosim.lake")


class LakeUnreachableError(RuntimeError):
    """S3 did not answer (refused or dropped connections, timeouts, 5xx answers)
    for longer than the retry budget. The message names the lake, its endpoint
    and what was being done; never a request URL or a credential."""


def _underlying(error: BaseException) -> BaseException:
    """The botocore error behind boto3's transfer wrappers, which hide it:
    `S3UploadFailedError` keeps it only as `__context__`,
    `RetriesExceededError` as `last_exception`."""
    from boto3.exceptions import RetriesExceededError, S3UploadFailedError

    if isinstance(error, RetriesExceededError) and error.last_exception is not None:
        return error.last_exception
    if isinstance(error, S3UploadFailedError) and error.__context__ is not None:
        return error.__context__
    return error


def _transient(error: BaseException) -> bool:
    """True for what a stopped, restarting or overloaded S3 gives: worth waiting for.
    Everything else (credentials, a missing bucket or key, a failing source
    file, a certificate problem) fails at once."""
    from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError, SSLError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(error, SSLError):
        return False
    if isinstance(error, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = error.response.get("Error", {}).get("Code", "")
        return status >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout", "ServiceUnavailable")
    return False


def _reason(error: BaseException) -> str:
    """What went wrong, for a message: the error class and, for an S3 answer,
    its code and HTTP status. Never str(error): botocore's messages quote the
    request URL (with upload ids, and for presigned requests a signature)."""
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = error.response.get("Error", {}).get("Code") or "no code"
        return f"{type(error).__name__} {code}, HTTP {status}"
    return type(error).__name__


def _redacted(url: str) -> str:
    """The URL for a message, with any user:password@ replaced by ***@."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


class S3Lake(LakeResource):
    """The lake in an S3 bucket, on AWS or any S3 API (SeaweedFS, MinIO).

    One boto3 client per resource instance, with botocore's "standard" retry
    mode (`max_attempts` = 5: at most 15 s of backoff in all). That rides out a
    dropped request, but not a restarting S3, which takes tens of seconds to
    answer again. So every operation is also retried whole, with backoff,
    until S3 has not answered for `retry_seconds` (HWOSIM_LAKE_RETRY_SECONDS);
    then it fails with a :class:`LakeUnreachableError` that says so.

    Multipart uploads: boto3 aborts a failed one, but the abort is one more
    request to the same S3, which fails if S3 is what went away (and nothing
    runs if the process is killed). An open upload keeps its parts (billed
    storage on AWS) until it is aborted. So every write first lists the
    uploads still open for its exact key and aborts them: the next write of a
    key cleans up after any earlier interrupted one. The price is one LIST per
    write, and two writers of the same key at the same moment are not
    supported (the later one would abort the earlier one's upload, which then
    fails; it never lands a mixed object).
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region_name: str | None = None
    part_size_mb: int = 16
    max_concurrency: int = 4
    max_attempts: int = 5
    retry_seconds: float = DEFAULT_RETRY_SECONDS

    _s3: Any = PrivateAttr(default=None)
    _last_answer: float = PrivateAttr(default=float("-inf"))  # time.monotonic() of S3's last answer
    _cleanup_denied: bool = PrivateAttr(default=False)

    # -- plumbing -----------------------------------------------------------------

    def _client(self) -> Any:
        """The boto3 client; credentials come from boto3's own chain, never from here."""
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"max_attempts": self.max_attempts, "mode": "standard"}, connect_timeout=CONNECT_TIMEOUT_S
            )
            client = boto3.session.Session().client(
                "s3", region_name=self.region_name, endpoint_url=self.endpoint_url, config=config
            )
            client.meta.events.register("after-call.s3", self._answered)
            self._s3 = client
        return self._s3

    def _answered(self, http_response: Any = None, **_: Any) -> None:
        """botocore hook, run after every response: note when S3 last answered.
        A 5xx is not an answer (a starting or failing S3 sends those), and a
        refused connection never gets here."""
        if http_response is not None and http_response.status_code < 500:
            self._last_answer = time.monotonic()

    def _full(self, key: str) -> str:
        """The stored key: the lake's prefix, then `key`. S3's 1,024-byte
        limit applies to the whole, so it is checked here, prefix included."""
        prefix = self.prefix.strip("/")
        full = f"{prefix}/{key}" if prefix else key
        if len(full.encode("utf-8")) > MAX_KEY_BYTES:
            raise ValueError(
                f"invalid lake key {_show(key)}: under the prefix {_show(prefix)} it is "
                f"{len(full.encode('utf-8')):,} bytes, more than the {MAX_KEY_BYTES:,} an S3 key may have"
            )
        return full

    def _endpoint(self) -> str:
        """Where requests go, for messages: scheme, host and port only."""
        if not self.endpoint_url:
            return f"AWS S3 ({self.region_name or 'default region'})"
        parts = urlsplit(self.endpoint_url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def _transfer_config(self):
        from boto3.s3.transfer import TransferConfig

        part = self.part_size_mb << 20
        return TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=self.max_concurrency)

    def _translate(self, error: BaseException, missing: str | None = None, doing: str = "") -> BaseException:
        """Turn botocore's errors into ones that say what to fix, or return it
        unchanged. `missing`: the key for which a 404 means "no such object"."""
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
            return LakeConfigError(_NO_CREDENTIALS.format(uri=self.uri()))
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return LakeConfigError(
                    f"S3 at {self._endpoint()} rejected the credentials ({code}) for {self.uri()}: "
                    "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                )
            if code == "NoSuchBucket":
                return LakeConfigError(f"bucket {self.bucket!r} does not exist (HWOSIM_LAKE_URL={self.uri()})")
            if missing is not None and code in ("404", "NoSuchKey", "NotFound"):
                return LakeKeyError(f"no object {self.uri(missing)} in the lake")
            if code == "NoSuchUpload":
                return RuntimeError(
                    f"S3 lake {self.uri()}: the multipart upload was aborted while {doing}, most likely by another "
                    "write of the same key at the same moment (every write aborts the uploads left open for its "
                    "key); this write stored nothing"
                )
        return error

    def _retrying(self, doing: str, attempt: Callable[[], Any], missing: str | None = None) -> Any:
        """Run `attempt` (one whole operation: a PUT, a multipart upload, a
        listing) until it succeeds. Transient failures (see :func:`_transient`)
        are retried with exponential backoff until S3 has given no answer for
        `retry_seconds`, counted from its last answer to any request of this
        lake (or from the start of the operation, if later). So a long upload
        whose parts were going through still gets the whole budget when S3
        goes away near its end. An attempt under way when the budget runs out
        is not cut short: giving up can come up to one attempt (botocore's own
        retries) later. Other errors are translated (:meth:`_translate`) and
        raised at once.

        `doing` ("writing raw/...") goes into the error messages; `missing`,
        for reads, is the key whose 404 becomes a :class:`LakeKeyError`."""
        started, pause = time.monotonic(), BACKOFF_FIRST_S
        for attempts in itertools.count(1):
            try:
                return attempt()
            except Exception as error:
                cause = _underlying(error)
                if not _transient(cause):
                    translated = self._translate(cause, missing, doing)
                    if translated is cause:
                        raise
                    raise translated from None
                now = time.monotonic()
                silent = now - max(self._last_answer, started)
                if silent >= self.retry_seconds:
                    # from None: the botocore error's message quotes the request URL
                    raise LakeUnreachableError(
                        f"S3 lake {self.uri()} at {self._endpoint()} is unreachable while {doing} "
                        f"({_reason(cause)}) after {attempts} attempt{'s' * (attempts > 1)} over "
                        f"{now - started:.1f} s; no answer for {silent:.1f} s, more than "
                        f"HWOSIM_LAKE_RETRY_SECONDS={self.retry_seconds:g}"
                    ) from None
                # jitter, so that writers cut off together do not all retry together
                wait = min(pause * random.uniform(0.5, 1.0), self.retry_seconds - silent)
                _log.warning(
                    f"S3 lake {self.uri()} at {self._endpoint()} did not answer while {doing} "
                    f"({_reason(cause)}); attempt {attempts + 1} in {wait:.1f} s, "
                    f"giving up after {self.retry_seconds - silent:.0f} s more without an answer"
                )
                time.sleep(wait)
                pause = min(pause * 2, BACKOFF_MAX_S)
        raise AssertionError("unreachable")  # itertools.count never ends

    def _abort_open_uploads(self, key: str) -> int:
        """Abort the multipart uploads still open for exactly `key`, left by
        an earlier write that was interrupted (see the class docstring); return
        how many. Without the permissions to list or abort uploads (AWS:
        s3:ListBucketMultipartUploads, s3:AbortMultipartUpload) it warns once
        and lets the write go on."""
        from botocore.exceptions import ClientError

        if self._cleanup_denied:
            return 0
        client, full = self._client(), self._full(key)
        try:
            pages = client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=full)
            open_ids = [u["UploadId"] for page in pages for u in page.get("Uploads", []) if u["Key"] == full]
            for upload_id in open_ids:
                client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("AccessDenied", "NotImplemented"):
                raise
            self._cleanup_denied = True
            _log.warning(
                f"cannot list or abort multipart uploads in {self.uri()} ({_reason(error)}): uploads "
                "interrupted by a crash or an outage stay open; grant s3:ListBucketMultipartUploads and "
                "s3:AbortMultipartUpload, or add a lifecycle rule AbortIncompleteMultipartUpload"
            )
            return 0
        if open_ids:
            _log.info(
                f"aborted {len(open_ids)} multipart upload(s) left open for {self.uri(key)} by an interrupted write"
            )
        return len(open_ids)

    # -- the lake API ---------------------------------------------------------------

    def put_file(self, key, path, progress=None) -> ObjectInfo:
        check_key(key)
        full = self._full(key)
        size, sha = os.stat(path).st_size, sha256_of(path)  # metadata must be known before the upload starts

        def upload() -> None:
            self._abort_open_uploads(key)
            # streams from disk in parts; on failure boto3 aborts the multipart
            # upload if S3 still answers (and the next write of the key if not)
            self._client().upload_file(
                str(path),
                self.bucket,
                full,
                ExtraArgs={"Metadata": {"sha256": sha}},
                Config=self._transfer_config(),
                Callback=progress,
            )

        self._retrying(f"writing {key}", upload)
        return ObjectInfo(key, size, sha)

    def put_fileobj(self, key, fileobj, progress=None) -> ObjectInfo:
        """Spool to a temporary file first: S3 metadata (the SHA-256) has to be
        sent before the data, a stream can be read only once, and a retried
        upload has to send the data again."""
        check_key(key)
        with tempfile.TemporaryDirectory(prefix="hwosim-spool-") as tmp:
            path = Path(tmp) / "object"
            with open(path, "wb") as out:
                shutil.copyfileobj(fileobj, out, CHUNK)
            return self.put_file(key, path, progress)

    def put_bytes(self, key, data) -> ObjectInfo:
        check_key(key)
        full = self._full(key)
        sha = hashlib.sha256(data).hexdigest()

        def put() -> None:
            self._abort_open_uploads(key)
            self._client().put_object(Bucket=self.bucket, Key=full, Body=data, Metadata={"sha256": sha})

        self._retrying(f"writing {key}", put)
        return ObjectInfo(key, len(data), sha)

    def read_bytes(self, key) -> bytes:
        check_key(key)
        full = self._full(key)
        # the body is read inside the attempt: a connection dropped mid-body is retried too
        return self._retrying(
            f"reading {key}",
            lambda: self._client().get_object(Bucket=self.bucket, Key=full)["Body"].read(),
            missing=key,
        )

    def get_file(self, key, dest_path) -> Path:
        check_key(key)
        full, dest = self._full(key), Path(dest_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # s3transfer downloads to a temporary name and renames it when complete
        self._retrying(
            f"reading {key}",
            lambda: self._client().download_file(self.bucket, full, str(dest), Config=self._transfer_config()),
            missing=key,
        )
        return dest

    def info(self, key) -> ObjectInfo | None:
        check_key(key)
        full = self._full(key)
        try:
            head = self._retrying(
                f"reading {key}", lambda: self._client().head_object(Bucket=self.bucket, Key=full), missing=key
            )
        except LakeKeyError:
            return None
        return ObjectInfo(key, int(head["ContentLength"]), head.get("Metadata", {}).get("sha256"))

    def list_keys(self, prefix="") -> list[str]:
        check_key(prefix, prefix=True)
        base, full = self._full(""), self._full(prefix)

        def listing() -> list[str]:
            pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            return [obj["Key"][len(base) :] for page in pages for obj in page.get("Contents", [])]

        return sorted(self._retrying(f"listing {prefix or 'all keys'}", listing))

    def delete(self, key) -> None:
        check_key(key)
        full = self._full(key)
        self._retrying(f"deleting {key}", lambda: self._client().delete_object(Bucket=self.bucket, Key=full))

    def uri(self, key="") -> str:
        check_key(key, prefix=True)
        return "s3://" + "/".join(p for p in (self.bucket, self.prefix.strip("/"), key) if p)

    def check(self) -> None:
        """Credentials present and accepted, bucket reachable."""
        from botocore.exceptions import ClientError

        try:
            self._retrying("checking the bucket", lambda: self._client().head_bucket(Bucket=self.bucket))
        except ClientError as e:  # HEAD answers carry no error code, only the status
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                raise LakeConfigError(f"bucket {self.bucket!r} does not exist (HWOSIM_LAKE_URL={self.uri()})") from None
            if status == 403:
                raise LakeConfigError(
                    f"access to {self.uri()} denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                    "and the bucket policy"
                ) from None
            raise


_BUCKET = re.compile(r"[a-z0-9]([a-z0-9._-]{0,253}[a-z0-9])?", re.IGNORECASE)
"""Bucket names as lenient as any S3 API is (AWS's rules for new buckets are
stricter: lowercase, 3-63 characters); what matters here is that no '/',
'\\', '@', ':' or '..' can make the bucket part name another place."""


def _s3_location(url: str) -> tuple[str, str]:
    """Bucket and prefix of an `s3://bucket/prefix` URL, refusing anything
    that could name another place than it seems to: a prefix with `.` or
    `..` parts (`s3://b/../victim`), empty parts or backslashes (the rules
    of :func:`check_key`); percent-escapes (S3 keys are literal, so `%2e%2e`
    would not mean what it looks like); a query or fragment (silently dropped
    otherwise); credentials or a port in the bucket's place. Control
    characters are refused before, by :func:`lake_from_url`."""
    where = f"HWOSIM_LAKE_URL={_show(_redacted(url))}"
    parts = urlsplit(url)
    bucket, path = parts.netloc, parts.path
    if "@" in bucket:
        raise ValueError(
            f"{where}: credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if not bucket:
        raise ValueError(f"{where}: expected s3://bucket/prefix")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"{where}: {bucket!r} is not a bucket name (up to 255 letters, digits, '.', '-' or '_', "
            "starting and ending with a letter or digit; an S3 endpoint goes in AWS_ENDPOINT_URL)"
        )
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(f"{where}: no '?' or '#' in the lake URL")
    if "%" in path:
        raise ValueError(f"{where}: percent-escapes are not decoded in an S3 prefix; write the prefix as it is")
    prefix = path[1:] if path.startswith("/") else path
    try:
        check_key(prefix, prefix=True)
    except ValueError as e:
        raise ValueError(f"{where}: the prefix is refused, {e}") from None
    return bucket, prefix.rstrip("/")


def lake_from_url(url: str, retry_seconds: float = DEFAULT_RETRY_SECONDS) -> LakeResource:
    """The lake named by HWOSIM_LAKE_URL: "" or a path or file:// = a local
    folder; s3://bucket/prefix = S3, at AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL
    when set (SeaweedFS, MinIO), else AWS itself. `retry_seconds`
    (HWOSIM_LAKE_RETRY_SECONDS) is how long an S3 operation waits for S3 to
    answer again; a local folder does not retry."""
    if not url:
        return LocalLake(root=str(Path(".hwosim/lake").absolute()))
    if any(ord(c) < 32 or ord(c) == 127 for c in url):  # urlsplit would silently drop tabs and newlines
        raise ValueError(f"HWOSIM_LAKE_URL={_show(_redacted(url))}: control characters (a stray newline or tab?)")
    parsed = urlsplit(url)
    scheme = parsed.scheme.lower()
    if scheme == "" or re.fullmatch(r"[a-z]", scheme):  # a path (or a Windows drive letter)
        return LocalLake(root=str(Path(url).expanduser().absolute()))
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"HWOSIM_LAKE_URL={_redacted(url)!r}: file:// URLs must name a local path")
        return LocalLake(root=unquote(parsed.path))
    if scheme == "s3":
        if not (retry_seconds >= 0 and math.isfinite(retry_seconds)):
            raise ValueError(f"HWOSIM_LAKE_RETRY_SECONDS={retry_seconds!r}: expected a number of seconds >= 0")
        bucket, prefix = _s3_location(url)
        return S3Lake(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None,
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
            retry_seconds=retry_seconds,
        )
    raise ValueError(
        f"HWOSIM_LAKE_URL={_redacted(url)!r}: unsupported scheme {scheme!r}; "
        "expected a path, file://path or s3://bucket/prefix"
    )
