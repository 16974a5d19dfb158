"""``openvpn``: OpenVPN control-channel hard reset over UDP or TCP.

Sends P_CONTROL_HARD_RESET_CLIENT_V2 (opcode 7) with a random session id,
optionally wrapped with tls-auth or tls-crypt from a client config, and
records every packet the server sends back within the window. A
P_CONTROL_HARD_RESET_SERVER_V2 that acknowledges our packet and names our
session id shows an OpenVPN server answered on this path. The probe then
acknowledges the server's reset (P_ACK_V1), as a real client does, and stops.

With a CA in the config (and the client certificate/key the server wants),
it goes on with the TLS handshake inside P_CONTROL_V1 packets (reliability
layer with acks and retransmission, ``censorscope.probes.openvpn_tls``) and
records a ``tls_handshake`` (``transport: "openvpn_control"``) under the
``openvpn_handshake``; then key method 2 and PUSH_REQUEST, recording the
server's options string and its PUSH_REPLY (or AUTH_FAILED) as
``openvpn_key_exchange``. No data-channel packet is sent: no tunnel.

Config (``--config``): an .ovpn file (``proto``, ``remote``, ``auth``,
``key-direction``, ``<tls-auth>``/``<tls-crypt>`` blocks or file paths) or a
TOML file with ``proto``, ``tls_auth``/``tls_crypt`` (key file paths),
``key_direction``, ``auth``, ``timeout``, ``ca``/``cert``/``key`` (PEM text or
paths; .ovpn: ``<ca>``/``<cert>``/``<key>`` blocks or ``ca``/``cert``/``key`` lines).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from censorscope.probes.errors import ConfigError, InvalidTarget
from censorscope.probes.failures import GENERIC_TIMEOUT, classify
from censorscope.probes.net import Net
from censorscope.probes.observation import Observation, Recorder, Step
from censorscope.probes.openvpn_tls import ControlChannel, Session
from censorscope.probes.vpn_common import (
    CLOSE_WAIT,
    Target,
    close_writer,
    config_or_empty,
    fail_unanswered,
    new_recorder,
    protocol_failure,
    target_and_config,
    tcp_connect,
    udp_exchange,
    udp_open,
    url_targets,
)
from censorscope.probes.wire import openvpn as wire

#: seconds of silence after which the client hard reset goes out again (OpenVPN's own reliability
#: layer starts at 2 s); a single lost datagram must not read as blocking
UDP_RESEND = 2.0
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
        tc2 = o.tls_crypt_v2 or o.files.get("tls-crypt-v2")
        proto, direction, digest = o.proto, o.key_direction, o.auth
    else:
        ta, tc, tc2 = cfg.get("tls_auth"), cfg.get("tls_crypt"), cfg.get("tls_crypt_v2")
        proto, direction = cfg.get("proto"), cfg.get("key_direction")
        digest = wire.DIGESTS.get(str(cfg.get("auth", "SHA1")).upper().replace("-", ""))
        if digest is None:
            raise ConfigError(f"unsupported auth digest {cfg.get('auth')!r}")
    if sum(1 for x in (ta, tc, tc2) if x) > 1:
        raise ConfigError("config has more than one of tls-auth, tls-crypt, tls-crypt-v2")
    wrap: wire.Wrap = None
    if tc2:
        try:
            kc, wkc = wire.parse_tls_crypt_v2_client_key(_pem(str(tc2), base))
        except wire.OpenVPNWireError as exc:
            raise ConfigError(str(exc)) from None
        wrap = wire.TlsCrypt(kc, client=True, wkc=wkc)
    elif ta:
        wrap = wire.TlsAuth(_read_key(ta, base), None if direction is None else int(direction), digest)
    elif tc:
        wrap = wire.TlsCrypt(_read_key(tc, base), client=True)
    return proto, wrap


def _pem(value: str, base: str) -> str:
    if "-----BEGIN" in value:
        return value
    path = value if os.path.isabs(value) else os.path.join(base, value)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path!r}: {exc}") from None


def credentials(cfg: dict) -> tuple[str, str] | None:
    """auth-user-pass (username, password): TOML ``username``/``password``, or the .ovpn
    ``<auth-user-pass>`` block / ``auth-user-pass FILE`` (two lines)."""
    if "text" not in cfg:
        return (str(cfg["username"]), str(cfg.get("password", ""))) if cfg.get("username") else None
    o = wire.parse_ovpn(cfg["text"])
    text = o.auth_user_pass
    if text is None and o.files.get("auth-user-pass"):
        text = _pem(o.files["auth-user-pass"], cfg.get("_dir", "."))
    if text is None:
        return None
    lines = text.strip().splitlines()
    return (lines[0].strip(), lines[1].strip() if len(lines) > 1 else "")


def _credentials_of(cfg: dict) -> tuple[str | None, str | None, str | None]:
    """The config's CA, client certificate and key (PEM text or paths), each None when absent."""
    if "text" in cfg:
        o = wire.parse_ovpn(cfg["text"])
        return o.ca or o.files.get("ca"), o.cert or o.files.get("cert"), o.key or o.files.get("key")
    return cfg.get("ca"), cfg.get("cert"), cfg.get("key")


def tls_context(cfg: dict) -> ssl.SSLContext | None:
    """A client TLS context from the config's CA (+ client cert/key), or None without a CA.

    Like OpenVPN, the server certificate is checked against the config's CA
    only (no host name: OpenVPN server certificates rarely carry one).
    """
    base = cfg.get("_dir", ".")
    ca, cert, key = _credentials_of(cfg)
    if not ca:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    try:
        ctx.load_verify_locations(cadata=_pem(str(ca), base))
        if cert and key:
            # ssl loads certificates from files only: write inline blocks to a private temp dir
            with tempfile.TemporaryDirectory() as d:
                cpath, kpath = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
                with open(cpath, "w") as fh:
                    fh.write(_pem(str(cert), base))
                with open(os.open(kpath, os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:
                    fh.write(_pem(str(key), base))
                ctx.load_cert_chain(cpath, kpath)
    except ssl.SSLError as exc:
        raise ConfigError(f"bad CA/cert/key in config: {exc}") from None
    return ctx


def _describe(rec: Recorder, at: float, data: bytes, sess: Session) -> tuple[dict, wire.Packet | None, str | None]:
    item: dict = {"t": round(at, 6), "size": len(data)}
    try:
        p = wire.parse(data, sess.wrap)
    except wire.OpenVPNWireError as exc:
        item.update(parse_error=str(exc), head=data[:32].hex())
        return item, None, str(exc)
    item.update(p.summary())
    return item, p, None


def _finish(step: Step, items: list[dict], answer: wire.Packet | None, parse_error: str | None,
            failure: str | None, fields: dict) -> Observation:
    fields["responses"] = items
    if answer is not None:
        fields.update(server_opcode=answer.opcode_name, server_session_id=answer.session_id.hex(),
                      server_acks=answer.acks, server_packet_id=answer.packet_id,
                      acknowledged=0 in answer.acks, authenticated=answer.authenticated)
        if answer.authenticated is False:
            return step.fail(protocol_failure("server reset fails tls-auth HMAC check"), **fields)
        return step.ok(**fields)
    return fail_unanswered(step, fields, parse_error=parse_error, responses=items,
                           wanted="server hard reset among the responses", failure=failure)


def _tls_fields(chan: ControlChannel) -> dict:
    fields: dict = {"control_packets_sent": chan.sent, "control_packets_received": chan.received,
                    "retransmissions": chan.retransmissions}
    if chan.done:
        der = chan.tls.getpeercert(binary_form=True)
        fields.update(tls_version=chan.tls.version(), cipher=(chan.tls.cipher() or [None])[0])
        if der:
            from cryptography import x509

            from censorscope.probes.quic import cert_summary

            fields["peer_certificates"] = [cert_summary(x509.load_der_x509_certificate(der))]
    return fields


def _tls_finish(step: Step, chan: ControlChannel, failure: str | None) -> Observation:
    if chan.done:
        return step.ok(**_tls_fields(chan))
    if chan.error is not None:
        return step.fail(chan.error, **_tls_fields(chan))
    return step.fail(failure or GENERIC_TIMEOUT, **_tls_fields(chan))


def _after_reset(sess: Session, answer: wire.Packet | None,
                 ctx: ssl.SSLContext | None) -> tuple[ControlChannel | None, list[bytes] | None]:
    """What follows the server's hard reset: the TLS control channel's first packets (with a
    client config) or a plain ACK of the reset; None without an answer that carries a packet id."""
    if answer is None or answer.packet_id is None:
        return None, None
    if ctx is None:
        return None, [sess.packet(wire.ACK_V1, [answer.packet_id], answer.session_id)]
    chan = ControlChannel(sess, answer.session_id, ctx, answer.packet_id)
    return chan, chan.initial()


async def _udp(rec: Recorder, net: Net, t: Target, sess: Session, timeout: float, hold: float,
               wrap_name: str, ctx: ssl.SSLContext | None, creds: tuple[str, str] | None) -> None:
    sock, conn = udp_open(rec, net, t)
    if sock is None:
        return
    reset = sess.packet(sess.reset_opcode)
    step = rec.begin("openvpn_handshake", conn.id, address=t.address, proto="udp", wrap=wrap_name,
                     client_opcode=wire.OPCODES[sess.reset_opcode], client_session_id=sess.session_id.hex(),
                     bytes_sent=len(reset))

    def stop(data: bytes) -> bool:
        try:
            return sess.is_answer(wire.parse(data, sess.wrap))
        except wire.OpenVPNWireError:
            return False

    try:
        res = await udp_exchange(rec, sock, [reset], timeout=timeout, hold=0.0 if ctx else hold, stop=stop,
                                 resend_every=UDP_RESEND)
        items, answer, perr = [], None, None
        for at, data in res.datagrams:
            item, p, err = _describe(rec, at, data, sess)
            items.append(item)
            perr = perr or err
            if p is not None and answer is None and sess.is_answer(p):
                answer = p
        fields: dict = {"bytes_sent": res.bytes_sent, "transmissions": res.transmissions}
        chan, first = _after_reset(sess, answer, ctx)
        if first is not None:
            try:
                for pkt in first:
                    sock.send(pkt)
                fields["ack_sent"] = True
            except OSError:
                fields["ack_sent"] = False
        obs = _finish(step, items, answer, perr, res.failure, fields)
        if chan is not None and answer is not None and obs.failure is None:
            await _control_phase(rec, _Link(sock=sock), t, sess, chan, answer.session_id, obs.id, timeout, creds)
    finally:
        sock.close()


async def _tcp(rec: Recorder, net: Net, t: Target, sess: Session, timeout: float, hold: float,
               wrap_name: str, ctx: ssl.SSLContext | None, creds: tuple[str, str] | None) -> None:
    reader, writer, conn = await tcp_connect(rec, net, t, timeout)
    if reader is None or writer is None:
        return
    reset = wire.frame_tcp(sess.packet(sess.reset_opcode))
    step = rec.begin("openvpn_handshake", conn.id, address=t.address, proto="tcp", wrap=wrap_name,
                     client_opcode=wire.OPCODES[sess.reset_opcode], client_session_id=sess.session_id.hex(),
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
        while loop.time() < deadline and not (answer is not None and ctx is not None):
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
        chan, first = _after_reset(sess, answer, ctx)
        if first is not None:
            for pkt in first:
                writer.write(wire.frame_tcp(pkt))
            fields["ack_sent"] = True
        if buf and chan is None:
            fields["trailing_bytes"] = buf[:32].hex()
        obs = _finish(step, items, answer, perr, failure, fields)
    except Exception as exc:  # noqa: BLE001 - every failure is data
        if answer is not None:
            _finish(step, items, answer, perr, None, fields)
        else:
            step.fail(exc, responses=items, **fields)
        await close_writer(writer)
        return
    try:
        if chan is not None and answer is not None and obs.failure is None:
            link = _Link(reader=reader, writer=writer, buf=buf)
            await _control_phase(rec, link, t, sess, chan, answer.session_id, obs.id, timeout, creds)
    finally:
        await close_writer(writer)


class _Link:
    """Packets to and from the server over UDP (one datagram each) or TCP (length-framed)."""

    def __init__(self, sock: socket.socket | None = None, reader: asyncio.StreamReader | None = None,
                 writer: asyncio.StreamWriter | None = None, buf: bytes = b"") -> None:
        self.sock, self.reader, self.writer, self.buf = sock, reader, writer, buf
        self.retransmits = sock is not None  # TCP is reliable: no retransmission timer

    async def send(self, packets: list[bytes]) -> None:
        if self.sock is not None:
            loop = asyncio.get_running_loop()
            for p in packets:
                await loop.sock_sendall(self.sock, p)
        elif self.writer is not None:
            self.writer.write(b"".join(wire.frame_tcp(p) for p in packets))

    async def recv(self, timeout: float) -> list[bytes]:
        """Packets that arrived within ``timeout`` (raises TimeoutError when none did)."""
        if self.sock is not None:
            loop = asyncio.get_running_loop()
            return [await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout)]
        assert self.reader is not None
        packets, self.buf = wire.unframe_tcp(self.buf)
        if packets:
            return packets
        chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not chunk:
            raise asyncio.IncompleteReadError(self.buf, None)
        self.buf += chunk
        packets, self.buf = wire.unframe_tcp(self.buf)
        return packets


async def _drive(link: _Link, sess: Session, chan: ControlChannel, server_sid: bytes, deadline: float,
                 until: Callable[[], bool]) -> str | None:
    """Exchange control packets until ``until()`` or a TLS error; the failure string, or None."""
    loop = asyncio.get_running_loop()
    await link.send(chan.outgoing())
    while not until() and chan.error is None:
        left = deadline - loop.time()
        if left <= 0:
            return GENERIC_TIMEOUT
        try:
            # OpenVPN retransmits after 2 s at first; 1 s keeps the probe brisk
            packets = await link.recv(min(1.0, left))
        except TimeoutError:
            if link.retransmits:
                await link.send(chan.retransmit())
            continue
        except wire.OpenVPNWireError as exc:
            return protocol_failure(str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure is data
            return classify(exc)
        for data in packets:
            try:
                p = wire.parse(data, sess.wrap)
            except wire.OpenVPNWireError:
                continue  # a stray datagram does not end the exchange
            if p.session_id == server_sid:
                chan.receive(p)
        await link.send(chan.outgoing())
    return None


#: what an OpenVPN 2.6 client announces: its options string (compared by the server, mismatches
#: only warn) and peer info with the data ciphers it supports (2.6 servers negotiate from these)
CLIENT_OPTIONS = ("V4,dev-type tun,link-mtu 1559,tun-mtu 1500,proto {proto},cipher AES-256-GCM,auth [null-digest],"
                  "keysize 256,key-method 2,tls-client")
#: control-channel messages a server sends after key method 2 (NUL-terminated text); the bytes
#: before them (the rest of the server's key-method-2 message) are skipped
_CONTROL_MESSAGE = re.compile(rb"((?:PUSH_REPLY|AUTH_FAILED|RESTART|HALT|AUTH_PENDING|INFO_PRE)[^\x00]*)\x00")
PEER_INFO = "IV_VER=2.6.0\nIV_PLAT=linux\nIV_PROTO=6\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\n"


async def _control_phase(rec: Recorder, link: _Link, t: Target, sess: Session, chan: ControlChannel,
                         server_sid: bytes, parent: int, timeout: float, creds: tuple[str, str] | None) -> None:
    """TLS inside the control channel, then key method 2 and PUSH_REQUEST -> PUSH_REPLY."""
    loop = asyncio.get_running_loop()
    step = rec.begin("tls_handshake", parent, address=t.address, transport="openvpn_control", server_name=None)
    failure = await _drive(link, sess, chan, server_sid, loop.time() + timeout, lambda: chan.done)
    tls_obs = _tls_finish(step, chan, failure)
    if not chan.done:
        return
    options = CLIENT_OPTIONS.format(proto="UDPv4" if link.sock is not None else "TCPv4_CLIENT")
    kx = rec.begin("openvpn_key_exchange", tls_obs.id, address=t.address, client_options=options,
                   username_sent=creds is not None)
    got = b""
    server: wire.KeyMethod2 | None = None

    def have_key_method() -> bool:
        nonlocal got, server
        got += chan.read_app()
        if server is None:
            try:
                server = wire.parse_server_key_method_2(got)
                got = got[server.length :]
            except wire.OpenVPNWireError:
                return False
        return True

    def have_push_reply() -> bool:
        nonlocal got
        got += chan.read_app()
        return _CONTROL_MESSAGE.search(got) is not None

    user, password = creds if creds else (None, None)
    chan.send_app(wire.build_key_method_2(options, PEER_INFO, os.urandom(112), user, password))
    failure = await _drive(link, sess, chan, server_sid, loop.time() + timeout, have_key_method)
    if server is None:
        kx.fail(failure or protocol_failure("no key method 2 reply"), bytes_received=len(got))
        return
    chan.send_app(b"PUSH_REQUEST\x00")
    failure = await _drive(link, sess, chan, server_sid, loop.time() + timeout, have_push_reply)
    m = _CONTROL_MESSAGE.search(got)
    text = m.group(1).decode("utf-8", "replace") if m else ""
    fields = {"server_options": server.options, "push_reply": text[:2048] if text else None}
    if text.startswith("PUSH_REPLY"):
        kx.ok(**fields)
    elif text:
        # AUTH_FAILED, RESTART, ... : the server speaks OpenVPN but refused this client
        kx.fail(f"unknown_failure: openvpn_control: {text.split(',', 1)[0][:64]}", **fields)
    else:
        kx.fail(failure or GENERIC_TIMEOUT, **fields)


def worst_case(target: str, options: Options) -> float:
    """Upper bound (s) of one measurement, for the campaign runner's watchdog.

    TCP: the connect's ``timeout``; both: the reset exchange's ``timeout``
    (the hold after the server reset ends within it); with a CA in the config,
    the control phase's three exchanges (TLS, key method 2, PUSH_REQUEST),
    ``timeout`` each; then the close.
    """
    cfg = config_or_empty(target, options.config)
    timeout = float(cfg.get("timeout", options.timeout))
    try:
        control = bool(_credentials_of(cfg)[0])  # a CA: the TLS control phase follows the reset
    except wire.OpenVPNWireError:  # a config measure refuses: count the longest path
        control = True
    return timeout + timeout + (3 * timeout if control else 0.0) + CLOSE_WAIT


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """Hard reset -> server hard reset; records ``connect`` and ``openvpn_handshake``."""
    t, cfg = target_and_config(target, "openvpn", 1194, options.config)
    cfg_proto, wrap = client_settings(cfg)
    ctx = tls_context(cfg)
    creds = credentials(cfg)
    proto = t.params.get("proto") or options.proto or cfg_proto or "udp"
    if proto not in ("udp", "tcp"):
        raise InvalidTarget(f"proto must be udp or tcp, not {proto!r}")
    timeout = float(cfg.get("timeout", options.timeout))
    hold = float(cfg.get("hold", options.hold))
    if isinstance(wrap, wire.TlsAuth):
        wrap_name = "tls-auth"
    elif isinstance(wrap, wire.TlsCrypt):
        wrap_name = "tls-crypt-v2" if wrap.wkc else "tls-crypt"
    else:
        wrap_name = "none"
    rec = new_recorder(net)
    sess = Session(wrap)
    if proto == "udp":
        await _udp(rec, net, t, sess, timeout, hold, wrap_name, ctx, creds)
    else:
        await _tcp(rec, net, t, sess, timeout, hold, wrap_name, ctx, creds)
    return rec.observations


target_from_url = url_targets(NAME)
