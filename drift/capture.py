"""Reading SageMaker data capture for a time window, from S3 or a local folder, one file at a time.

SageMaker writes a real-time endpoint's capture to `<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/
<file>.jsonl`, partitioned by the UTC hour. Readers here list only the hour partitions that overlap the window
(one listing per hour and variant, never the whole prefix) and read the files in key order, downloading the next
PREFETCH files while one is scored: at most PREFETCH + 1 files' bytes are in memory. In partitions at the window's
edges, records are kept by their `inferenceTime`; inside the window the partition is the filter. A local folder
may be laid out from the capture prefix, the endpoint or the variant down, or be a single .jsonl file (then every
record is filtered by its time).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HOUR = timedelta(hours=1)
PREFETCH = 2  # capture files downloading ahead of the one being scored: memory is (PREFETCH + 1) files


@dataclass(frozen=True)
class CaptureFile:
    """One capture file's bytes; `edge` when its hour partition is not wholly inside the window.

    `size` is the file's length (a file scored in a worker process reaches the caller as its key and size only).
    """

    key: str
    data: bytes
    edge: bool
    size: int = -1

    def __post_init__(self) -> None:
        if self.size < 0:
            object.__setattr__(self, "size", len(self.data))


@dataclass(frozen=True)
class S3Access:
    """How another process reaches the same bucket as a client: region, endpoint and frozen credentials.

    Picklable, for worker processes that download the files they score (mlinfra_drift.parallel) instead of the
    main process shipping every file's bytes to them. `session` (kept here, never pickled) lets `current()` freeze
    the credentials again as they are now: refreshable ones (SSO, instance roles, assumed-role profiles) renew
    before they expire, so a long run hands its workers fresh ones.
    """

    region: str | None
    endpoint_url: str | None
    access_key: str | None = None
    secret_key: str | None = None
    token: str | None = None
    session: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, session: Any, client: Any) -> S3Access:
        """The access of `client`, made from `session` (a boto3 Session)."""
        return cls._frozen(session, client.meta.region_name, client.meta.endpoint_url)

    @classmethod
    def _frozen(cls, session: Any, region: str | None, endpoint_url: str | None) -> S3Access:
        credentials = session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        return cls(
            region=region,
            endpoint_url=endpoint_url,
            access_key=frozen.access_key if frozen else None,
            secret_key=frozen.secret_key if frozen else None,
            token=frozen.token if frozen else None,
            session=session,
        )

    def current(self) -> S3Access:
        """The same access with the session's credentials as they are now (itself when there is no session)."""
        return self if self.session is None else self._frozen(self.session, self.region, self.endpoint_url)

    def __reduce__(self) -> tuple[Any, ...]:
        return S3Access, (self.region, self.endpoint_url, self.access_key, self.secret_key, self.token)

    def client(self) -> Any:
        """A new S3 client with this access (standard retries: throttling and 5xx are retried with backoff)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            aws_session_token=self.token,
            config=Config(retries={"mode": "standard", "max_attempts": 6}, connect_timeout=10, read_timeout=120),
        )


def read_object(s3_client: Any, bucket: str, key: str) -> bytes:
    """An object's bytes."""
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        return bytes(body.read())
    finally:
        body.close()


_worker_client: tuple[S3Access, Any] | None = None  # a worker process's client, for the access it was made with


@dataclass(frozen=True)
class S3Fetcher:
    """Reads a capture object of one bucket in another process (picklable; sent with each file to score).

    The process keeps one client and makes a new one only when the credentials it is sent have changed.
    """

    access: S3Access
    bucket: str

    def __call__(self, key: str) -> bytes:
        global _worker_client  # noqa: PLW0603 - one client per worker process, reused across files
        if _worker_client is None or _worker_client[0] != self.access:
            _worker_client = (self.access, self.access.client())
        return read_object(_worker_client[1], self.bucket, key)


def read_path(path: str) -> bytes:
    """A local capture file's bytes (the fetcher of a LocalCapture: a path is all another process needs)."""
    return Path(path).read_bytes()


Fetcher = Callable[[str], bytes]


def utc(when: datetime) -> datetime:
    """A datetime in UTC (naive ones are taken as UTC, as SageMaker's partitions and times are)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def hours(start: datetime, end: datetime) -> list[datetime]:
    """The UTC hours whose partitions overlap [start, end)."""
    first = utc(start).replace(minute=0, second=0, microsecond=0)
    out = []
    while first < utc(end):
        out.append(first)
        first += HOUR
    return out


def hour_path(hour: datetime) -> str:
    """The partition path of an hour: yyyy/mm/dd/hh."""
    return hour.strftime("%Y/%m/%d/%H")


@dataclass
class _Window:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        self.start, self.end = utc(self.start), utc(self.end)
        if self.end <= self.start:
            raise ValueError(f"the window ends ({self.end:%Y-%m-%dT%H:%M:%SZ}) before it starts")

    def contains(self, when: datetime) -> bool:
        return self.start <= utc(when) < self.end

    def is_edge(self, hour: datetime) -> bool:
        return hour < self.start or hour + HOUR > self.end


@dataclass
class S3Capture:
    """Capture files under `s3://bucket/prefix` (the endpoint's DestinationS3Uri) in the window.

    `endpoint` limits reading to one endpoint's folder (stages that share a bucket capture side by side), and
    `variant` with it to one variant (then nothing is listed to find them);
    `modified_after` / `modified_before` keep only objects whose LastModified is in [after, before) (a job that
    checkpoints by upload time);
    `after_key` skips every key at or before it (a checkpoint: each file is scored once); after iterating,
    `last_key` is the last key read, `files` and `bytes_read` count what was read;
    `access` (optional) lets worker processes download files themselves (`score(..., workers=N)`).
    """

    s3_client: Any
    bucket: str
    prefix: str
    start: datetime
    end: datetime
    after_key: str | None = None
    endpoint: str | None = None
    variant: str | None = None
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    access: S3Access | None = None
    last_key: str | None = field(default=None, init=False)
    files: int = field(default=0, init=False)
    bytes_read: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.window = _Window(self.start, self.end)
        self.start, self.end = self.window.start, self.window.end
        self.prefix = self.prefix.strip("/")

    def _children(self, prefix: str) -> list[str]:
        paginator = self.s3_client.get_paginator("list_objects_v2")
        found: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            found.extend(item["Prefix"] for item in page.get("CommonPrefixes", []))
        return found

    def variants(self) -> list[str]:
        """The `<prefix>/<endpoint>/<variant>/` prefixes below the capture prefix (two short listings)."""
        if self.endpoint and self.variant:
            return [f"{self.prefix}/{self.endpoint}/{self.variant}/"]
        if self.endpoint:
            return self._children(f"{self.prefix}/{self.endpoint}/")
        return [variant for endpoint in self._children(self.prefix + "/") for variant in self._children(endpoint)]

    def keys(self) -> Iterator[tuple[str, bool]]:
        """(key, edge) of the capture files in the window, in key order per variant."""
        variants = self.variants()
        paginator = self.s3_client.get_paginator("list_objects_v2")
        for hour in hours(self.start, self.end):
            edge = self.window.is_edge(hour)
            for variant in variants:
                prefix = f"{variant}{hour_path(hour)}/"
                options: dict[str, str] = {}
                if self.after_key and self.after_key.startswith(variant) and self.after_key >= prefix:
                    options["StartAfter"] = self.after_key
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, **options):
                    for item in page.get("Contents", []):
                        key = item["Key"]
                        fresh = not (self.after_key and key <= self.after_key)
                        if key.endswith(".jsonl") and fresh and self._modified_in_range(item.get("LastModified")):
                            yield key, edge

    def _modified_in_range(self, modified: datetime | None) -> bool:
        if modified is None or (self.modified_after is None and self.modified_before is None):
            return True
        modified = utc(modified)
        if self.modified_after is not None and modified < utc(self.modified_after):
            return False
        return self.modified_before is None or modified < utc(self.modified_before)

    def _get(self, key: str) -> bytes:
        return read_object(self.s3_client, self.bucket, key)

    def count(self, key: str, size: int) -> None:
        """Count a file as read (for files read elsewhere, e.g. by a worker process)."""
        self.files += 1
        self.bytes_read += size
        self.last_key = key if self.last_key is None or key > self.last_key else self.last_key

    def locations(self) -> Iterator[tuple[str, bool]]:
        """(key, edge) of the files in the window (what `read` and a worker's fetcher take)."""
        return self.keys()

    def fetcher(self) -> Fetcher | None:
        """What reads a key in a worker process, with the credentials as they are now (asked for each file).

        None without `access`: then workers get the bytes from this process.
        """
        return S3Fetcher(self.access.current(), self.bucket) if self.access is not None else None

    def __iter__(self) -> Iterator[CaptureFile]:
        return self.read(self.keys())

    def read(self, locations: Iterable[tuple[str, bool]]) -> Iterator[CaptureFile]:
        """The files of `locations` in order; up to PREFETCH download while the caller scores the current one."""
        from concurrent.futures import Future, ThreadPoolExecutor

        pending: deque[tuple[str, bool, Future[bytes]]] = deque()
        keys = iter(locations)
        with ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="capture") as pool:
            try:
                while True:
                    while len(pending) < PREFETCH and (nxt := next(keys, None)) is not None:
                        pending.append((nxt[0], nxt[1], pool.submit(self._get, nxt[0])))
                    if not pending:
                        return
                    key, edge, future = pending.popleft()
                    data = future.result()
                    self.count(key, len(data))
                    yield CaptureFile(key, data, edge)
            finally:
                for _, _, future in pending:
                    future.cancel()

    def in_window(self, when: datetime) -> bool:
        """Whether an inferenceTime is inside the window."""
        return self.window.contains(when)


@dataclass
class LocalCapture:
    """Capture files in a local folder (SageMaker's layout from any of its levels) or one .jsonl file."""

    path: Path
    start: datetime
    end: datetime
    files: int = field(default=0, init=False)
    bytes_read: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.window = _Window(self.start, self.end)
        self.start, self.end = self.window.start, self.window.end

    def paths(self) -> Iterator[tuple[Path, bool]]:
        """(file, edge) of the capture files in the window."""
        if self.path.is_file():
            yield self.path, True
            return
        for hour in hours(self.start, self.end):
            edge = self.window.is_edge(hour)
            partition = hour_path(hour)
            found: set[Path] = set()
            for depth in ("", "*/", "*/*/"):  # the variant folder, the endpoint folder, the capture prefix
                found.update(self.path.glob(f"{depth}{partition}/*.jsonl"))
            for file in sorted(found):
                yield file, edge

    def locations(self) -> Iterator[tuple[str, bool]]:
        """(path, edge) of the files in the window (what `read` and a worker's fetcher take)."""
        return ((str(file), edge) for file, edge in self.paths())

    def skipped(self) -> dict[str, int]:
        """How many .jsonl files below the folder were not read, by why.

        `layout`: not in an hour partition at a level SageMaker's layout allows; `window`: in an hour partition
        outside the window.
        """
        if self.path.is_file():
            return {}
        read = {file for file, _ in self.paths()}
        out = {"layout": 0, "window": 0}
        for file in self.path.rglob("*.jsonl"):
            if file in read:
                continue
            parts = file.relative_to(self.path).parts
            in_layout = 5 <= len(parts) <= 7 and all(
                part.isdigit() and len(part) == width for part, width in zip(parts[-5:-1], (4, 2, 2, 2), strict=True)
            )
            out["window" if in_layout else "layout"] += 1
        return out

    def fetcher(self) -> Fetcher:
        """What reads a path in a worker process."""
        return read_path

    def count(self, path: str, size: int) -> None:
        """Count a file as read (for files read elsewhere, e.g. by a worker process)."""
        self.files += 1
        self.bytes_read += size

    def __iter__(self) -> Iterator[CaptureFile]:
        return self.read(self.locations())

    def read(self, locations: Iterable[tuple[str, bool]]) -> Iterator[CaptureFile]:
        """The files of `locations`, in order."""
        for path, edge in locations:
            data = read_path(path)
            self.count(path, len(data))
            yield CaptureFile(path, data, edge)

    def in_window(self, when: datetime) -> bool:
        """Whether an inferenceTime is inside the window."""
        return self.window.contains(when)


Capture = S3Capture | LocalCapture


def capture_key(prefix: str, endpoint: str, variant: str, written: datetime, name: str) -> str:
    """Where SageMaker puts a capture file: `<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<name>.jsonl`."""
    written = utc(written)
    stamp = f"{written:%M-%S}-{written.microsecond // 1000:03d}"
    return f"{prefix.strip('/')}/{endpoint}/{variant}/{hour_path(written)}/{stamp}-{name}.jsonl"
