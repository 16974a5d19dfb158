"""``openvpn``: OpenVPN control-channel hard reset over UDP or TCP.

Sends P_CONTROL_HARD_RESET_CLIENT_V2 (opcode 7) with a random session id,
optionally wrapped with tls-auth or tls-crypt from a client config, and
records every packet the server sends back within the window. A
P_CONTROL_HARD_RESET_SERVER_V2 that acknowledges our packet and names our
session id shows an OpenVPN server answered on this path. The probe then
acknowledges the server's reset (P_ACK_V1), as a real client does, and stops:
no TLS handshake is performed (see docs/vpn.md).

Config (``--config``): an .ovpn file (``proto``, ``remote``, ``auth``,
``key-direction``, ``<tls-auth>``/``<tls-crypt>`` blocks or file paths) or a
TOML file with ``proto``, ``tls_auth``/``tls_crypt`` (key file paths),
``key_direction``, ``auth``, ``timeout``.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from censorscope.probes.errors import ConfigError, InvalidTarget
from censorscope.probes.net import Net
from censorscope.probes.observation import Observation, Recorder, Step
from censorscope.probes.vpn_common import (
    Target,
    close_writer,
    load_config,
    new_recorder,
    parse_target,
    protocol_failure,
    tcp_connect,
    udp_exchange,
    udp_open,
)
from censorscope.probes.wire import openvpn as wire

NAME = "openvpn"
VERSION = "0.1.0"
SUMMARY = "OpenVPN hard reset (UDP or TCP, optional tls-auth/tls-crypt) and the server's reply."
TARGET_HELP = "openvpn://IP[:PORT]?proto=udp|tcp"


@dataclass
class Options:
    """Options of the openvpn probe."""

    proto: str | None = field(default=None, metadata={"help": "udp or tcp (default: target ?proto=, config, udp).",
                                                      "choices": ["udp", "tcp"]})
    timeout: float = field(default=5.0, metadata={"help": "Seconds for connect and to wait for the server reset."})
    hold: float = field(default=0.5, metadata={"help": "Seconds to keep listening after the server reset."})
    config: str | None = field(default=None, metadata={"help": ".ovpn or TOML client config (tls-auth/tls-crypt keys)."})


def _read_key(value: str, base: str) -> wire.StaticKey:
    text = value
    if "-----BEGIN" not in value:
        path = value if os.path.isabs(value) else os.path.join(base, value)
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError(f"cannot read key file {path!r}: {exc}") from None
    try:
        return wire.parse_static_key(text)
    except wire.OpenVPNWireError as exc:
        raise ConfigError(str(exc)) from None


def client_settings(cfg: dict) -> tuple[str | None, wire.Wrap]:
    """(proto, wrap) from a loaded config (``load_config`` output)."""
    base = cfg.get("_dir", ".")
    if "text" in cfg:
        try:
            o = wire.parse_ovpn(cfg["text"])
        except wire.OpenVPNWireError as exc:
            raise ConfigError(str(exc)) from None
        ta = o.tls_auth or o.files.get("tls-auth")
        tc = o.tls_crypt or o.files.get("tls-crypt")
        proto, direction, digest = o.proto, o.key_direction, o.auth
    else:
        ta, tc = cfg.get("tls_auth"), cfg.get("tls_crypt")
        proto, direction = cfg.get("proto"), cfg.get("key_direction")
        digest = wire.DIGESTS.get(str(cfg.get("auth", "SHA1")).upper().replace("-", ""))
        if digest is None:
            raise ConfigError(f"unsupported auth digest {cfg.get('auth')!r}")
    if ta and tc:
        raise ConfigError("config has both tls-auth and tls-crypt")
    wrap: wire.Wrap = None
    if ta:
        wrap = wire.TlsAuth(_read_key(ta, base), None if direction is None else int(direction), digest)
    elif tc:
        wrap = wire.TlsCrypt(_read_key(tc, base), client=True)
    return proto, wrap


class _Session:
    """Our side of the control channel: session id and packet counters."""

    def __init__(self, wrap: wire.Wrap) -> None:
        self.wrap = wrap
        self.session_id = os.urandom(8)
        self.replay_pid = 1
        self.msg_pid = 0

    def packet(self, opcode: int, acks: list[int] | None = None, remote: bytes | None = None) -> bytes:
        p = wire.Packet(opcode, 0, self.session_id, acks or [], remote if acks else None,
                        None if opcode == wire.ACK_V1 else self.msg_pid, b"", self.replay_pid, int(time.time()))
        self.replay_pid += 1
        if opcode != wire.ACK_V1:
            self.msg_pid += 1
        return wire.build(p, self.wrap)

    def is_answer(self, p: wire.Packet) -> bool:
        return p.opcode in wire.SERVER_RESETS and p.remote_session_id in (None, self.session_id)


def _describe(rec: Recorder, at: float, data: bytes, sess: _Session) -> tuple[dict, wire.Packet | None, str | None]:
    item: dict = {"t": round(at, 6), "size": len(data)}
    try:
        p = wire.parse(data, sess.wrap)
    except wire.OpenVPNWireError as exc:
        item.update(parse_error=str(exc), head=data[:32].hex())
        return item, None, str(exc)
    item.update(p.summary())
    return item, p, None


def _finish(step: Step, items: list[dict], answer: wire.Packet | None, parse_error: str | None,
            failure: str | None, fields: dict) -> None:
    fields["responses"] = items
    if answer is not None:
        fields.update(server_opcode=answer.opcode_name, server_session_id=answer.session_id.hex(),
                      server_acks=answer.acks, server_packet_id=answer.packet_id,
                      acknowledged=0 in answer.acks, authenticated=answer.authenticated)
        if answer.authenticated is False:
            step.fail(protocol_failure("server reset fails tls-auth HMAC check"), **fields)
        else:
            step.ok(**fields)
    elif parse_error:
        step.fail(protocol_failure(parse_error), **fields)
    elif items:
        step.fail(protocol_failure("no server hard reset among the responses"), **fields)
    else:
        step.fail(failure or "generic_timeout_error", **fields)


async def _udp(rec: Recorder, net: Net, t: Target, sess: _Session, timeout: float, hold: float,
               wrap_name: str) -> None:
    sock, conn = udp_open(rec, net, t)
    if sock is None:
        return
    reset = sess.packet(wire.HARD_RESET_CLIENT_V2)
    step = rec.begin("openvpn_handshake", conn.id, address=t.address, proto="udp", wrap=wrap_name,
                     client_opcode="P_CONTROL_HARD_RESET_CLIENT_V2", client_session_id=sess.session_id.hex(),
                     bytes_sent=len(reset))

    def stop(data: bytes) -> bool:
        try:
            return sess.is_answer(wire.parse(data, sess.wrap))
        except wire.OpenVPNWireError:
            return False

    try:
        res = await udp_exchange(rec, sock, [reset], timeout=timeout, hold=hold, stop=stop)
        items, answer, perr = [], None, None
        for at, data in res.datagrams:
            item, p, err = _describe(rec, at, data, sess)
            items.append(item)
            perr = perr or err
            if p is not None and answer is None and sess.is_answer(p):
                answer = p
        fields: dict = {}
        if answer is not None and answer.packet_id is not None:
            ack = sess.packet(wire.ACK_V1, [answer.packet_id], answer.session_id)
            try:
                sock.send(ack)
                fields["ack_sent"] = True
            except OSError:
                fields["ack_sent"] = False
        _finish(step, items, answer, perr, res.failure, fields)
    finally:
        sock.close()


async def _tcp(rec: Recorder, net: Net, t: Target, sess: _Session, timeout: float, hold: float,
               wrap_name: str) -> None:
    reader, writer, conn = await tcp_connect(rec, net, t, timeout)
    if reader is None or writer is None:
        return
    reset = wire.frame_tcp(sess.packet(wire.HARD_RESET_CLIENT_V2))
    step = rec.begin("openvpn_handshake", conn.id, address=t.address, proto="tcp", wrap=wrap_name,
                     client_opcode="P_CONTROL_HARD_RESET_CLIENT_V2", client_session_id=sess.session_id.hex(),
                     bytes_sent=len(reset))
    items: list[dict] = []
    answer = None
    perr = failure = None
    buf = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    fields: dict = {}
    try:
        writer.write(reset)
        while loop.time() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - loop.time())
            except TimeoutError:
                break
            if not chunk:
                failure = "eof_error"
                break
            buf += chunk
            try:
                packets, buf = wire.unframe_tcp(buf)
            except wire.OpenVPNWireError as exc:
                perr = str(exc)
                break
            for data in packets:
                item, p, err = _describe(rec, rec.now(), data, sess)
                items.append(item)
                perr = perr or err
                if p is not None and answer is None and sess.is_answer(p):
                    answer = p
                    deadline = min(deadline, loop.time() + hold)
            if perr:
                break
        if buf:
            fields["trailing_bytes"] = buf[:32].hex()
        if answer is not None and answer.packet_id is not None:
            writer.write(wire.frame_tcp(sess.packet(wire.ACK_V1, [answer.packet_id], answer.session_id)))
            fields["ack_sent"] = True
        _finish(step, items, answer, perr, failure, fields)
    except Exception as exc:  # noqa: BLE001 - every failure is data
        if answer is not None:
            _finish(step, items, answer, perr, None, fields)
        else:
            step.fail(exc, responses=items, **fields)
    finally:
        await close_writer(writer)


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """Hard reset -> server hard reset; records ``connect`` and ``openvpn_handshake``."""
    t = parse_target(target, "openvpn", 1194)
    cfg = load_config(options.config)
    cfg_proto, wrap = client_settings(cfg)
    proto = t.params.get("proto") or options.proto or cfg_proto or "udp"
    if proto not in ("udp", "tcp"):
        raise InvalidTarget(f"proto must be udp or tcp, not {proto!r}")
    timeout = float(cfg.get("timeout", options.timeout))
    hold = float(cfg.get("hold", options.hold))
    wrap_name = "tls-auth" if isinstance(wrap, wire.TlsAuth) else "tls-crypt" if wrap else "none"
    rec = new_recorder(net)
    sess = _Session(wrap)
    if proto == "udp":
        await _udp(rec, net, t, sess, timeout, hold, wrap_name)
    else:
        await _tcp(rec, net, t, sess, timeout, hold, wrap_name)
    return rec.observations
