"""Copy a results directory to central storage, safely and exactly once.

``sync(results, dest)`` copies every finished results file (JSONL runs and
the Parquet archive) to ``DEST/<prefix>/<relative path>``, where DEST is any
fsspec URL (``file://``, ``sftp://``, ``s3://``, ``gs://``) and ``prefix``
names the vantage, so many VPSes can write into one bucket without clashing.

- **Idempotent**: a local manifest remembers what reached DEST (size, mtime,
  SHA-256); a remote ``<file>.sha256`` sidecar lets a machine that lost its
  manifest recognise files already there. Re-running transfers nothing twice.
- **Resumable**: bytes go to ``<file>.part``; after an interruption the next
  run checks the part's prefix against the local file and appends the rest
  (on stores without append, such as S3, it starts the file over).
- **Verified**: the remote copy is read back and its SHA-256 compared before
  it is renamed into place and recorded.
- Files modified in the last ``min_age`` seconds (a run still writing) wait.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from censorscope.probes.errors import StoreError

CHUNK = 1024 * 1024
#: fsspec protocols whose files can be opened for appending (resumable uploads).
APPENDABLE = frozenset({"file", "local", "sftp", "ssh"})
MANIFEST_DIR = ".sync"


def vantage_prefix() -> str:
    """A stable per-machine prefix that does not reveal the host: ``vantage-<hash of machine-id>``."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            ident = Path(path).read_text().strip()
        except OSError:
            continue
        if ident:
            return "vantage-" + hashlib.sha256(b"censorscope\0" + ident.encode()).hexdigest()[:12]
    raise StoreError("no machine id to derive a vantage prefix from: pass --prefix")


def file_sha256(path: Path) -> str:
    """SHA-256 of a local file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class SyncReport:
    """What one sync did."""

    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    bytes_sent: int = 0


def _syncable(results: Path) -> Iterator[Path]:
    for p in sorted(results.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(results)
        if rel.parts[0] == MANIFEST_DIR or p.name.endswith((".tmp", ".part", ".lock")):
            continue
        if p.suffix in (".jsonl", ".parquet") or p.name.endswith(".meta.json"):
            yield p


class _Manifest:
    def __init__(self, results: Path, dest_key: str) -> None:
        self.path = results / MANIFEST_DIR / (hashlib.sha256(dest_key.encode()).hexdigest()[:16] + ".json")
        try:
            self.entries: dict[str, dict[str, Any]] = json.loads(self.path.read_text())["files"]
        except (OSError, ValueError, KeyError):
            self.entries = {}
        self.dest_key = dest_key

    def matches(self, rel: str, st: os.stat_result) -> bool:
        e = self.entries.get(rel)
        return bool(e) and e["size"] == st.st_size and e["mtime_ns"] == st.st_mtime_ns

    def record(self, rel: str, st: os.stat_result, sha: str) -> None:
        self.entries[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"dest": self.dest_key, "files": self.entries}, indent=1))
        os.replace(tmp, self.path)


def _remote_sha(fs: fsspec.AbstractFileSystem, path: str) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _prefix_ok(fs: fsspec.AbstractFileSystem, part: str, local: Path, size: int) -> bool:
    """True when the first ``size`` bytes of the remote part equal the local file's."""
    remaining = size
    with fs.open(part, "rb") as r, open(local, "rb") as f:
        while remaining:
            n = min(CHUNK, remaining)
            if r.read(n) != f.read(n):
                return False
            remaining -= n
    return True


def _copy(local: Path, offset: int, out: Any) -> int:
    """Write ``local`` from ``offset`` to the open remote file ``out``; return bytes written."""
    sent = 0
    with open(local, "rb") as src:
        src.seek(offset)
        for block in iter(lambda: src.read(CHUNK), b""):
            out.write(block)
            sent += len(block)
    return sent


def sync(
    results: Path,
    dest: str,
    *,
    prefix: str | None = None,
    storage_options: dict[str, Any] | None = None,
    min_age: float = 60.0,
    now: Callable[[], float] = time.time,
    progress: Callable[[str, str], None] | None = None,
) -> SyncReport:
    """Copy every finished results file under ``results`` to ``dest/prefix``."""
    if not results.is_dir():
        raise StoreError(f"{results}: not a results directory")
    prefix = prefix or vantage_prefix()
    if "/" in prefix.strip("/") or prefix in (".", ".."):
        raise StoreError(f"bad prefix {prefix!r}: one path component expected")
    fs, root = fsspec.core.url_to_fs(dest, **(storage_options or {}))
    root = root.rstrip("/") + "/" + prefix.strip("/")
    manifest = _Manifest(results, f"{dest}|{prefix}")
    report = SyncReport()
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    can_append = bool(protocols & APPENDABLE)
    say = progress or (lambda _what, _rel: None)

    for local in _syncable(results):
        rel = local.relative_to(results).as_posix()
        st = local.stat()
        if now() - st.st_mtime < min_age:
            report.waiting.append(rel)
            say("wait", rel)
            continue
        if manifest.matches(rel, st):
            report.skipped.append(rel)
            continue
        sha = file_sha256(local)
        target = f"{root}/{rel}"
        sidecar = target + ".sha256"
        if fs.exists(target) and fs.exists(sidecar) and fs.cat_file(sidecar).decode().strip() == sha:
            manifest.record(rel, st, sha)  # already there (e.g. the manifest was lost)
            report.skipped.append(rel)
            continue
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        part = target + ".part"
        offset = 0
        if can_append and fs.exists(part):
            have = fs.size(part)
            if 0 < have <= st.st_size and _prefix_ok(fs, part, local, have):
                offset = have
                report.resumed.append(rel)
        say("send", rel)
        with fs.open(part, "ab" if offset else "wb") as out:
            report.bytes_sent += _copy(local, offset, out)
        if fs.size(part) != st.st_size or _remote_sha(fs, part) != sha:
            fs.rm(part)
            raise StoreError(f"{rel}: remote copy failed verification; removed, run sync again")
        with fs.open(sidecar, "wb") as f:
            f.write(sha.encode() + b"\n")
        if fs.exists(target):
            fs.rm(target)
        fs.mv(part, target)
        manifest.record(rel, st, sha)
        report.uploaded.append(rel)
    return report
