"""sync: idempotent, resumable, verified; against a local directory and a real sshd (sftp) on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

import censorscope.measure.sync as syncmod
from censorscope.measure.sync import sync
from censorscope.probes.errors import StoreError

pytestmark = pytest.mark.net


def _results(tmp_path: Path) -> Path:
    res = tmp_path / "results"
    (res / "parquet" / "date=2026-11-01").mkdir(parents=True)
    (res / "20261101T000000Z-aaaa.jsonl").write_bytes(b'{"a": 1}\n' * 50_000)  # ~450 KB
    (res / "20261101T000000Z-aaaa.meta.json").write_text("{}")
    (res / "parquet" / "date=2026-11-01" / "x.parquet").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (res / "notes.txt").write_text("not a results file")
    old = time.time() - 3600
    for p in res.rglob("*"):
        if p.is_file():
            os.utime(p, (old, old))
    return res


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_local_sync_copies_verifies_and_is_idempotent(tmp_path: Path):
    res = _results(tmp_path)
    dest = tmp_path / "bucket"
    r1 = sync(res, f"file://{dest}", prefix="vp1")
    assert sorted(r1.uploaded) == [
        "20261101T000000Z-aaaa.jsonl", "20261101T000000Z-aaaa.meta.json", "parquet/date=2026-11-01/x.parquet"]
    got = _tree(dest / "vp1")
    for rel in r1.uploaded:
        assert got[rel] == (res / rel).read_bytes()
        assert (dest / "vp1" / (rel + ".sha256")).exists()
    assert "notes.txt" not in got
    r2 = sync(res, f"file://{dest}", prefix="vp1")
    assert r2.uploaded == [] and r2.bytes_sent == 0
    # a machine that lost its manifest recognises the files by their remote checksums
    shutil.rmtree(res / ".sync")
    r3 = sync(res, f"file://{dest}", prefix="vp1")
    assert r3.uploaded == [] and r3.bytes_sent == 0
    # a second vantage writes beside the first without touching it
    r4 = sync(res, f"file://{dest}", prefix="vp2")
    assert len(r4.uploaded) == 3 and _tree(dest / "vp1") == got


def test_files_still_being_written_wait(tmp_path: Path):
    res = _results(tmp_path)
    (res / "20261128T000000Z-bbbb.jsonl").write_text('{"b": 2}\n')
    r = sync(res, f"file://{tmp_path / 'bucket'}", prefix="v", min_age=60)
    assert r.waiting == ["20261128T000000Z-bbbb.jsonl"]


def test_interrupted_upload_resumes_without_sending_twice(tmp_path: Path, monkeypatch):
    res = _results(tmp_path)
    dest = tmp_path / "bucket"
    big = res / "parquet" / "date=2026-11-01" / "x.parquet"
    real_chunk = syncmod.CHUNK

    class Boom(Exception):
        pass

    real_copy = syncmod._copy

    def copy_then_drop(local, offset, out):  # the connection drops after two chunks of the big file
        if local != big:
            return real_copy(local, offset, out)
        with open(local, "rb") as src:
            src.seek(offset)
            out.write(src.read(real_chunk))
            out.write(src.read(real_chunk))
        out.flush()
        raise Boom("connection lost")

    monkeypatch.setattr(syncmod, "_copy", copy_then_drop)
    with pytest.raises(Boom):
        sync(res, f"file://{dest}", prefix="v")
    monkeypatch.undo()
    part = dest / "v" / "parquet" / "date=2026-11-01" / "x.parquet.part"
    assert part.exists() and part.stat().st_size == 2 * real_chunk
    r = sync(res, f"file://{dest}", prefix="v")
    assert "parquet/date=2026-11-01/x.parquet" in r.resumed
    assert r.bytes_sent == big.stat().st_size - 2 * real_chunk  # only the rest
    assert (dest / "v" / "parquet" / "date=2026-11-01" / "x.parquet").read_bytes() == big.read_bytes()
    assert not part.exists()


def test_corrupt_partial_upload_is_restarted(tmp_path: Path):
    res = _results(tmp_path)
    dest = tmp_path / "bucket"
    big = res / "parquet" / "date=2026-11-01" / "x.parquet"
    part = dest / "v" / "parquet" / "date=2026-11-01" / "x.parquet.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # not a prefix of the real file
    r = sync(res, f"file://{dest}", prefix="v")
    assert "parquet/date=2026-11-01/x.parquet" not in r.resumed
    assert (dest / "v" / "parquet" / "date=2026-11-01" / "x.parquet").read_bytes() == big.read_bytes()


def test_bad_prefix_refused(tmp_path: Path):
    res = _results(tmp_path)
    with pytest.raises(StoreError):
        sync(res, f"file://{tmp_path}/b", prefix="../escape")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path: Path):
    """A real OpenSSH server on 127.0.0.1 accepting one generated key for root."""
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    assert os.path.exists(sshd_bin), "openssh-server is installed by ci/apt-packages.txt"
    d = tmp_path / "sshd"
    d.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client")], check=True)
    shutil.copy(d / "client.pub", d / "authorized_keys")
    port = _free_port()
    cfg = d / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nPidFile {d / 'pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(cfg)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("sshd did not start")
        yield port, d / "client"
    finally:
        proc.terminate()
        proc.wait(10)


def test_sftp_sync_with_a_real_sshd(tmp_path: Path, sshd):
    port, key = sshd
    res = _results(tmp_path)
    remote = tmp_path / "remote"
    remote.mkdir()
    opts = {"port": port, "username": "root", "key_filename": str(key), "look_for_keys": False,
            "allow_agent": False}
    url = f"sftp://127.0.0.1{remote}"
    r1 = sync(res, url, prefix="vp", storage_options=opts)
    assert len(r1.uploaded) == 3
    for rel in r1.uploaded:
        assert (remote / "vp" / rel).read_bytes() == (res / rel).read_bytes()
    r2 = sync(res, url, prefix="vp", storage_options=opts)
    assert r2.uploaded == [] and r2.bytes_sent == 0
    # interrupted: leave a partial upload as a dropped connection would, then resume over sftp
    big_rel = "parquet/date=2026-11-01/x.parquet"
    target = remote / "vp" / big_rel
    data = (res / big_rel).read_bytes()
    target.unlink()
    (remote / "vp" / (big_rel + ".sha256")).unlink()
    (remote / "vp" / (big_rel + ".part")).write_bytes(data[: 1024 * 1024])
    shutil.rmtree(res / ".sync")
    r3 = sync(res, url, prefix="vp", storage_options=opts)
    assert r3.resumed == [big_rel] and r3.uploaded == [big_rel]
    assert r3.bytes_sent == len(data) - 1024 * 1024
    assert target.read_bytes() == data
