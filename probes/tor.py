"""``tor``: Tor OR-port handshake (TLS + link protocol v3+), directory port, obfs4 bridges.

* OR port: TLS (Tor relays use self-signed certificates, so nothing is
  verified by the CA store), then VERSIONS; the relay's VERSIONS, CERTS,
  AUTH_CHALLENGE and NETINFO cells are parsed. The RSA identity certificate
  gives the relay fingerprint, compared with the expected one (``?fp=`` or
  the bridge line) when known. The probe answers with a NETINFO cell and
  closes: no circuit is built.
* Directory port (``--dirport``): ``GET /tor/server/authority``.
* Bridge lines (``--bridge``): plain ``IP:PORT [FP]`` or ``obfs4 IP:PORT FP
  cert=... iat-mode=...``. obfs4 runs through the ``obfs4proxy`` client
  (pt-spec managed proxy: ``TOR_PT_*`` environment, ``CMETHOD`` line, then
  SOCKS5 with the bridge arguments as username/password); without
  obfs4proxy the observation says the transport is unsupported.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass, field

from censorscope.probes.errors import InvalidTarget
from censorscope.probes.net import Net
from censorscope.probes.observation import Observation, Recorder
from censorscope.probes.vpn_common import (
    CLOSE_WAIT,
    Target,
    close_writer,
    config_or_empty,
    config_param,
    load_config,
    new_recorder,
    parse_target,
    protocol_failure,
    read_exact,
    tcp_connect,
    unread,
    url_targets,
)
from censorscope.probes.wire import socks as socks_wire
from censorscope.probes.wire import tor as wire

NAME = "tor"
VERSION = "0.1.0"
SUMMARY = "Tor OR-port TLS + VERSIONS/CERTS/NETINFO handshake, directory port, obfs4 bridges."
TARGET_HELP = "tor://IP:PORT[?fp=FINGERPRINT] (or --bridge LINE)"
UNSUPPORTED = "unknown_failure: unsupported: "


@dataclass
class Options:
    """Options of the tor probe."""

    bridge: str | None = field(default=None, metadata={"help": "Bridge line, e.g. 'obfs4 IP:PORT FP cert=... iat-mode=0'."})
    fingerprint: str | None = field(default=None, metadata={"help": "Expected relay fingerprint (40 hex)."})
    dirport: int = field(default=0, metadata={"help": "Also fetch /tor/server/authority from this directory port."})
    obfs4proxy: str = field(default="obfs4proxy", metadata={"help": "obfs4proxy binary (for obfs4 bridges)."})
    timeout: float = field(default=15.0, metadata={"help": "Seconds for connect, TLS and the responder's cells."})
    config: str | None = field(default=None, metadata={"help": "TOML: bridge, fingerprint, dirport, obfs4proxy, timeout."})


async def _cells(reader: asyncio.StreamReader, timeout: float) -> tuple[list[wire.Cell], int | None, list[int]]:
    """Read the responder's cells up to and including NETINFO."""
    buf = b""
    link: int | None = None
    server_versions: list[int] = []
    cells: list[wire.Cell] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - loop.time()))
        if not chunk:
            raise asyncio.IncompleteReadError(buf, None)
        buf += chunk
        while True:
            # one cell at a time: the VERSIONS cell changes the circuit id width of the rest
            cell, n = wire.parse_cell(buf, link)
            if cell is None:
                break
            buf = buf[n:]
            cells.append(cell)
            if cell.command == wire.VERSIONS and link is None:
                server_versions = wire.parse_versions(cell.payload)
                link = wire.negotiate(wire.OFFERED_VERSIONS, server_versions)
                if link is None:
                    return cells, None, server_versions
            if cell.command == wire.NETINFO:
                return cells, link, server_versions


async def _handshake(rec: Recorder, net: Net, parent: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, address: str, peer_ip: str, expected_fp: str | None,
                     timeout: float, via: str) -> None:
    step = rec.begin("tor_handshake", parent, address=address, via=via, fingerprint_expected=expected_fp,
                     versions_offered=list(wire.OFFERED_VERSIONS))
    fields: dict = {}
    try:
        await net.start_tls(writer, net.tls_context(verify=False), None, timeout=timeout)
        ssl_obj = writer.get_extra_info("ssl_object")
        fields.update(tls_version=ssl_obj.version() if ssl_obj else None,
                      cipher=ssl_obj.cipher()[0] if ssl_obj and ssl_obj.cipher() else None, t_tls=round(rec.now(), 6))
        writer.write(wire.build_versions())
        cells, link, server_versions = await _cells(reader, timeout)
        fields.update(server_versions=server_versions, link_protocol=link, cells=[c.name for c in cells])
        if link is None:
            step.fail(protocol_failure("no common link protocol version"), **fields)
            return
        for c in cells:
            if c.command == wire.CERTS:
                certs = wire.parse_certs(c.payload)
                fields["cert_types"] = [wire.CERT_TYPES.get(t, str(t)) for t, _ in certs]
                ident = [body for t, body in certs if t == 2]
                if ident:
                    fields["fingerprint"] = wire.rsa_identity_fingerprint(ident[0])
            elif c.command == wire.AUTH_CHALLENGE:
                fields["auth_methods"] = wire.parse_auth_challenge(c.payload).methods
            elif c.command == wire.NETINFO:
                ni = wire.parse_netinfo(c.payload)
                fields["netinfo"] = {"timestamp": ni.timestamp, "other_address": ni.other_address,
                                     "my_addresses": ni.my_addresses}
                fields["clock_skew"] = round(ni.timestamp - net.wall_clock(), 3) if ni.timestamp else None
        if expected_fp:
            fields["fingerprint_match"] = fields.get("fingerprint") == expected_fp.upper()
        writer.write(wire.build_netinfo(link, peer_ip))
        if "fingerprint" not in fields:
            step.fail(protocol_failure("no RSA identity certificate in CERTS"), **fields)
        else:
            step.ok(**fields)
    except wire.TorWireError as exc:
        step.fail(protocol_failure(str(exc)), **fields)
    except Exception as exc:  # noqa: BLE001 - every failure is data
        if "tls_version" not in fields and unread(reader):
            fields["pre_tls_head"] = unread(reader)[:64].hex()
        step.fail(exc, **fields)


async def _directory(rec: Recorder, net: Net, host: str, port: int, timeout: float) -> None:
    t = Target(host, port)
    reader, writer, conn = await tcp_connect(rec, net, t, timeout)
    if reader is None or writer is None:
        return
    path = "/tor/server/authority"
    step = rec.begin("tor_directory", conn.id, address=t.address, path=path)
    body = b""
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        while len(body) < 1 << 20:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            body += chunk
        head = socks_wire.parse_http_head(body)
        payload = body[body.find(b"\r\n\r\n") + 4 :]
        step.ok(status=head.status, headers=[list(h) for h in head.headers], body_length=len(payload),
                descriptor=payload.startswith(b"router "))
    except socks_wire.HttpConnectWireError as exc:
        step.fail(protocol_failure(str(exc)), bytes_received=len(body))
    except Exception as exc:  # noqa: BLE001
        step.fail(exc, bytes_received=len(body))
    finally:
        await close_writer(writer)


async def _obfs4(rec: Recorder, net: Net, bridge: wire.BridgeLine, binary: str, timeout: float) -> None:
    path = shutil.which(binary)
    address = f"{bridge.host}:{bridge.port}"
    if path is None:
        rec.add("tor_handshake", rec.now(), failure=UNSUPPORTED + "obfs4proxy not installed", address=address,
                via="obfs4")
        return
    state = tempfile.mkdtemp(prefix="censorscope-pt-")
    env = dict(os.environ, TOR_PT_MANAGED_TRANSPORT_VER="1", TOR_PT_STATE_LOCATION=state,
               TOR_PT_CLIENT_TRANSPORTS="obfs4", TOR_PT_EXIT_ON_STDIN_CLOSE="1")
    step = rec.begin("pt_launch", None, transport="obfs4", binary=path)
    proc = await asyncio.create_subprocess_exec(path, env=env, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    writer = None
    try:
        lines: list[str] = []
        socks_addr = None
        assert proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(proc.stdout.readline(), timeout)
            if not raw:
                break
            line = raw.decode(errors="replace").strip()
            lines.append(line)
            words = line.split()
            if words[:2] == ["CMETHOD", "obfs4"] and len(words) >= 4:
                socks_addr = words[3]
            if words and words[0] in ("CMETHODS", "CMETHOD-ERROR", "VERSION-ERROR", "ENV-ERROR"):
                if words[0] != "CMETHODS":
                    break
                if socks_addr:
                    break
        if not socks_addr:
            launch = step.fail(protocol_failure("obfs4proxy gave no CMETHOD"), lines=lines)
            return
        launch = step.ok(lines=lines, socks=socks_addr)
        shost, _, sport = socks_addr.rpartition(":")
        proxy = Target(shost, int(sport))
        reader, writer, conn = await tcp_connect(rec, net, proxy, timeout, parent_id=launch.id)
        if reader is None or writer is None:
            return
        pstep = rec.begin("proxy_connect", conn.id, proxy_type="socks5", address=proxy.address,
                          destination=address, transport="obfs4")
        try:
            user, password = wire.socks_args(bridge.args)
            writer.write(socks_wire.build_greeting([socks_wire.METHOD_USERPASS]))
            if socks_wire.parse_method_choice(await read_exact(reader, 2, timeout)) != socks_wire.METHOD_USERPASS:
                pstep.fail(protocol_failure("pt proxy refused username/password method"))
                return
            writer.write(socks_wire.build_userpass(user, password))
            if socks_wire.parse_userpass_reply(await read_exact(reader, 2, timeout)) != 0:
                pstep.fail(protocol_failure("pt proxy rejected the bridge arguments"))
                return
            writer.write(socks_wire.build_connect(bridge.host, bridge.port))
            head = await read_exact(reader, 5, timeout)
            reply = socks_wire.parse_connect_reply(head + await read_exact(reader, socks_wire.reply_length(head) - 5,
                                                                           timeout))
        except socks_wire.SocksWireError as exc:
            pstep.fail(protocol_failure(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001
            pstep.fail(exc)
            return
        if reply.reply != 0:
            # obfs4proxy reports the obfs4 handshake's fate as the SOCKS reply
            pstep.fail(f"unknown_failure: socks_reply: {reply.reply_text}", reply=reply.reply)
            return
        pobs = pstep.ok(reply=0)
        await _handshake(rec, net, pobs.id, reader, writer, address, bridge.host, bridge.fingerprint, timeout, "obfs4")
    except Exception as exc:  # noqa: BLE001
        if step.observation is None:
            step.fail(exc)
    finally:
        await close_writer(writer)
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        shutil.rmtree(state, ignore_errors=True)


#: lines a pluggable-transport client prints before its SOCKS port is known (pt-spec: VERSION,
#: CMETHOD, CMETHODS DONE), each read within ``timeout``
_PT_LINES = 3
#: SOCKS5 replies read from the obfs4 client (method choice, user/pass, connect reply head and rest)
_SOCKS_READS = 4
#: seconds allowed for killing obfs4proxy and reaping it
_PT_EXIT = 2.0


def worst_case(target: str, options: Options) -> float:
    """Upper bound (s) of one measurement, for the campaign runner's watchdog.

    OR port: connect, TLS and the responder's cells, ``timeout`` each, then
    the close; through obfs4, first the transport's launch lines, the connect
    to its SOCKS port and the SOCKS replies, ``timeout`` each, and its exit;
    the directory fetch: connect and two reads that wait out ``timeout`` (a
    directory trickling its answer can hold it longer: that is what the
    watchdog is for), then the close.
    """
    cfg = config_or_empty(target, options.config)
    timeout = float(cfg.get("timeout", options.timeout))
    line = cfg.get("bridge", options.bridge)
    try:
        bridge = wire.parse_bridge_line(str(line)) if line else None
    except wire.TorWireError:
        return 0.0  # measure refuses the bridge line
    handshake = 3 * timeout + CLOSE_WAIT
    if bridge is not None and bridge.transport == "obfs4":
        handshake += (_PT_LINES + _SOCKS_READS) * timeout + _PT_EXIT
    elif bridge is not None and bridge.transport:
        handshake = 0.0  # unsupported transport: recorded at once
    dirport = int(cfg.get("dirport", options.dirport) or 0)
    return handshake + (3 * timeout + CLOSE_WAIT if dirport else 0.0)


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """OR-port handshake (direct or obfs4), optional directory fetch."""
    cfg = load_config(config_param(target) or options.config)
    line = cfg.get("bridge", options.bridge)
    timeout = float(cfg.get("timeout", options.timeout))
    rec = new_recorder(net)
    bridge: wire.BridgeLine | None = None
    if line:
        try:
            bridge = wire.parse_bridge_line(str(line))
        except wire.TorWireError as exc:
            raise InvalidTarget(f"bad bridge line: {exc}") from None
        t = Target(bridge.host, bridge.port)
        expected = bridge.fingerprint
    else:
        t = parse_target(target, "tor", None)
        expected = t.params.get("fp") or cfg.get("fingerprint", options.fingerprint)
    if bridge is not None and bridge.transport == "obfs4":
        await _obfs4(rec, net, bridge, str(cfg.get("obfs4proxy", options.obfs4proxy)), timeout)
    elif bridge is not None and bridge.transport:
        rec.add("tor_handshake", rec.now(), failure=UNSUPPORTED + f"transport {bridge.transport}",
                address=t.address, via=bridge.transport)
    else:
        reader, writer, conn = await tcp_connect(rec, net, t, timeout)
        if reader is not None and writer is not None:
            try:
                await _handshake(rec, net, conn.id, reader, writer, t.address, t.host,
                                 str(expected) if expected else None, timeout, "direct")
            finally:
                await close_writer(writer)
    dirport = int(cfg.get("dirport", options.dirport) or 0)
    if dirport:
        await _directory(rec, net, t.host, dirport, timeout)
    return rec.observations


target_from_url = url_targets(NAME)
