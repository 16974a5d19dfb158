"""The daemon's packet handling (verdicts, marks, held packets, errors) with fake queue packets; the CA."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from cryptography import x509
from test_censor_packets import client_hello, tcp

from censorscope.lab.censor.__main__ import in_initial_namespace, main
from censorscope.lab.censor.actionlog import ActionLog
from censorscope.lab.censor.ca import CA_NAME, CensorCA
from censorscope.lab.censor.config import load_config
from censorscope.lab.censor.daemon import CensorDaemon
from censorscope.lab.censor.engine import Engine, build_behaviours


class FakePacket:
    """Stands in for netfilterqueue.Packet."""

    def __init__(self, raw: bytes, mark: int = 0) -> None:
        self.raw, self.mark, self.verdict, self.retained = raw, mark, None, False

    def get_payload(self) -> bytes:
        return self.raw

    def get_mark(self) -> int:
        return self.mark

    def set_mark(self, m: int) -> None:
        self.mark = m

    def retain(self) -> None:
        self.retained = True

    def accept(self) -> None:
        assert self.verdict is None
        self.verdict = "accept"

    def drop(self) -> None:
        assert self.verdict is None
        self.verdict = "drop"


class FakeInjector:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str]] = []

    def send(self, raw: bytes, dst: str) -> str | None:
        self.sent.append((raw, dst))
        return None


def daemon(tmp_path: Path, *behaviours: dict) -> CensorDaemon:
    d = CensorDaemon(tmp_path / "censor.json")
    d.log = ActionLog(tmp_path / "log.jsonl")
    d.injector = FakeInjector()  # type: ignore[assignment]
    cfg = load_config({"behaviours": list(behaviours)})
    d.engine = Engine(build_behaviours(cfg, state_dir=tmp_path, log=d.log.event, rng=random.Random(1)))
    return d


def records(tmp_path: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]


def test_drop_with_injections_logged_first(tmp_path):
    d = daemon(tmp_path, {"behaviour": "rst_injection", "sni": ["blocked.example"]})
    syn = FakePacket(tcp(flags="S", seq=999, ack=0))
    d._on_packet(syn)
    pkt = FakePacket(tcp(client_hello("blocked.example")))
    d._on_packet(pkt)
    assert syn.verdict == "accept" and pkt.verdict == "drop"
    assert len(d.injector.sent) == 2  # type: ignore[attr-defined]
    (rec,) = records(tmp_path)
    assert rec["action"] == "rst" and isinstance(rec["t"], float)


def test_mark_is_ored_into_existing_mark(tmp_path):
    d = daemon(tmp_path, {"behaviour": "throttle", "sni": ["slow.example"]})
    d._on_packet(FakePacket(tcp(flags="S", seq=999, ack=0)))
    pkt = FakePacket(tcp(client_hello("slow.example")), mark=0x1)
    d._on_packet(pkt)
    assert pkt.verdict == "accept" and pkt.mark == 0x1 | (1 << 16)


def test_delayed_packets_are_held_then_released(tmp_path):
    d = daemon(tmp_path, {"behaviour": "latency", "delay_ms": 30})
    pkt = FakePacket(tcp(b"x"))
    d._on_packet(pkt)
    assert pkt.retained and pkt.verdict is None and len(d.held) == 1
    d._release()
    assert pkt.verdict is None  # not due yet
    time.sleep(0.05)
    d._release()
    assert pkt.verdict == "accept" and not d.held


def test_behaviour_error_is_logged_and_packet_accepted(tmp_path):
    d = daemon(tmp_path, {"behaviour": "latency", "delay_ms": 30})

    def boom(seen, now):
        raise RuntimeError("bug")

    d.engine.behaviours[0].on_packet = boom  # type: ignore[method-assign]
    pkt = FakePacket(tcp(b"x"))
    d._on_packet(pkt)
    assert pkt.verdict == "accept"
    (rec,) = records(tmp_path)
    assert rec["action"] == "error" and "bug" in rec["error"]


def test_refuses_the_initial_namespace(tmp_path, capsys, monkeypatch):
    assert in_initial_namespace("/proc/self/ns/net", "/proc/self/ns/net")
    assert not in_initial_namespace("/proc/self/ns/net", "/nonexistent")
    monkeypatch.setattr("censorscope.lab.censor.__main__.in_initial_namespace", lambda: True)
    assert main(["--config", str(tmp_path / "any.json")]) == 2
    assert "refusing" in capsys.readouterr().err


def test_invalid_config_fails_before_touching_the_kernel(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"behaviours": [{"behaviour": "nope"}]}))
    monkeypatch.setattr("censorscope.lab.censor.__main__.in_initial_namespace", lambda: False)
    monkeypatch.setattr("censorscope.lab.censor.daemon.NetfilterQueue", None)  # would fail if reached
    assert main(["--config", str(bad)]) == 2
    assert "unknown behaviour 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "bad.json.ready").exists()


def test_censor_ca_is_reused_and_issues_cached_leaves(tmp_path):
    ca = CensorCA(tmp_path / "ca")
    chain, key = ca.leaf("www.blocked.example")
    assert ca.leaf("www.blocked.example") == (chain, key)
    leaf, root = x509.load_pem_x509_certificates(chain.read_bytes())
    assert CA_NAME in root.subject.rfc4514_string()
    leaf.verify_directly_issued_by(root)
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["www.blocked.example"]
    again = CensorCA(tmp_path / "ca")
    assert again.cert == ca.cert  # same root after a restart or reload
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o077 == 0


def test_reload_rejected_by_the_kernel_restores_the_running_config(tmp_path, monkeypatch):
    import subprocess

    from censorscope.lab.censor import daemon as daemon_mod

    installed: list[dict] = []
    fail = {"next": False}

    def fake_install(rules):
        if fail["next"]:
            fail["next"] = False
            raise subprocess.CalledProcessError(1, ["iptables-restore"], stderr="bad rule")
        installed.append(rules)

    monkeypatch.setattr(daemon_mod.iptables, "install", fake_install)
    conf = tmp_path / "censor.json"
    log = tmp_path / "log.jsonl"

    def write(behaviours):
        conf.write_text(json.dumps({"behaviours": behaviours, "log": str(log), "state_dir": str(tmp_path / "s")}))

    write([{"behaviour": "ip_blackhole", "addresses": ["203.0.113.9"]}])
    d = CensorDaemon(conf)
    d._apply(daemon_mod.load_config_file(conf))
    assert d.generation == 1
    write([{"behaviour": "ip_blackhole", "addresses": ["203.0.113.7"], "mode": "all"}])
    fail["next"] = True
    d._reload()
    assert d.generation == 1 and json.loads(Path(str(conf) + ".ready").read_text())["generation"] == 1
    assert d.engine.behaviours[0].addresses == frozenset({"203.0.113.9"})
    assert [r["action"] for r in records(tmp_path)] == ["reload_failed"]
    d._reload()  # the kernel accepts it now
    assert d.generation == 2 and d.engine.behaviours[0].addresses == frozenset({"203.0.113.7"})
    assert records(tmp_path)[-1]["action"] == "reloaded"
    d.log.close()
