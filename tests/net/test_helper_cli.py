"""``censorscope helper serve`` as a real process on 127.0.0.1 (random port)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from subprocs import stop_process

from censorscope.measure.cli import cli

pytestmark = pytest.mark.net

EXE = Path(sys.executable).with_name("censorscope")


@pytest.fixture
def serve():
    procs: list[subprocess.Popen] = []

    def start(*args: str, env: dict | None = None) -> tuple[str, subprocess.Popen]:
        p = subprocess.Popen([str(EXE), "helper", "serve", "--listen", "127.0.0.1:0", *args],
                             stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        procs.append(p)
        line = p.stderr.readline()
        m = re.search(r"listening on (https?://127\.0\.0\.1:\d+)", line)
        assert m, line
        return m.group(1), p

    yield start
    for p in procs:
        stop_process(p)


def test_serve_end_to_end(serve):
    url, proc = serve("--allow", "127.0.0.0/8", env={"CENSORSCOPE_HELPER_TOKEN": "tok"})
    with httpx.Client(trust_env=False, timeout=30) as c:
        assert c.get(url + "/v1/health").status_code == 200
        assert c.get(url + "/v1/whoami").status_code == 401  # token taken from the environment
        auth = {"Authorization": "Bearer tok"}
        assert c.get(url + "/v1/whoami", headers=auth).json()["ip"] == "127.0.0.1"
        r = c.post(url + "/v1/measure", headers=auth, json={"probe": "tcp", "target": "10.0.0.1:80"})
        assert r.status_code == 403
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    logged = [ln for ln in err.splitlines() if ln.startswith("{")]
    assert any('"outcome":"refused"' in ln and '"target":"10.0.0.1:80"' in ln for ln in logged)
    assert "tok" not in err.replace("token", "")


def test_serve_rejects_bad_flags():
    runner = CliRunner()
    assert runner.invoke(cli, ["helper", "serve", "--allow", "not-a-net"]).exit_code == 2
    assert runner.invoke(cli, ["helper", "serve", "--listen", "nohost"]).exit_code == 2
    r = runner.invoke(cli, ["helper", "serve", "--resolver", "dns.example.test"])
    assert r.exit_code == 2


def test_help():
    runner = CliRunner()
    for args in (["helper", "--help"], ["helper", "serve", "--help"]):
        r = runner.invoke(cli, args)
        assert r.exit_code == 0 and "Usage" in r.output
    assert "--allow" in runner.invoke(cli, ["helper", "serve", "--help"]).output


def _cert_files(tmp_path):
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "censorscope test helper")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_serve_https_with_control_client(serve, tmp_path, monkeypatch):
    import asyncio

    from censorscope.measure.control import ControlClient

    cert, key = _cert_files(tmp_path)
    https, _ = serve("--tls-cert", cert, "--tls-key", key, "--token", "t0k")
    assert https.startswith("https://")
    # without trusting the certificate the client records the failure
    got = asyncio.run(ControlClient(https, "t0k").control_for("tcp", "10.0.0.1:80", None))
    assert got["failure"] == "helper_unreachable: ssl_unknown_authority"
    monkeypatch.setenv("CENSORSCOPE_EXTRA_CA", cert)
    client = ControlClient(https, "t0k")
    assert asyncio.run(client.whoami()) == "127.0.0.1"
    refused = asyncio.run(client.control_for("tcp", "10.0.0.1:80", None))
    assert refused["failure"].startswith("helper_refused: ")
