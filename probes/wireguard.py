"""``wireguard``: a real WireGuard handshake initiation and cryptographic check of the response.

Modes (recorded as ``mode``):

* ``handshake``: the server's public key *and* a client private key that the
  server knows as a peer (plus an optional preshared key). The probe sends a
  handshake initiation and validates the response (mac1 and the Noise AEAD):
  a valid response proves the endpoint holds the server's private key.
* ``unknown_peer``: only the server's public key. The probe sends a
  well-formed initiation from a random static key; a WireGuard server drops
  initiations from peers it does not know, so *no response is expected* and
  none is a failure. Only an ICMP error (``connection_refused``) or an
  unexpected answer says anything; path reachability cannot be concluded.
* ``random_responder``: no key at all; same as above, to a random public key
  (the packet still has the size and type byte DPI looks for).

Config (``--config``): TOML (``public_key``, ``private_key``,
``preshared_key``, ``timeout``) or a wg-quick file (``[Interface]
PrivateKey``, ``[Peer] PublicKey``/``PresharedKey``).
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field

from censorscope.probes.errors import ConfigError
from censorscope.probes.failures import GENERIC_TIMEOUT
from censorscope.probes.net import Net
from censorscope.probes.observation import Observation
from censorscope.probes.vpn_common import (
    fail_unanswered,
    new_recorder,
    target_and_config,
    udp_exchange,
    udp_open,
    url_targets,
)
from censorscope.probes.wire import wireguard as wire

NAME = "wireguard"
VERSION = "0.1.0"
SUMMARY = "WireGuard handshake initiation and cryptographic validation of the response."
TARGET_HELP = "wireguard://IP[:PORT]?pubkey=BASE64"


@dataclass
class Options:
    """Options of the wireguard probe."""

    pubkey: str | None = field(default=None, metadata={"help": "Server public key (base64), or ?pubkey= in the target."})
    private_key: str | None = field(default=None, metadata={"help": "Client private key the server knows (base64)."})
    preshared_key: str | None = field(default=None, metadata={"help": "Preshared key (base64), if the peer has one."})
    timeout: float = field(default=5.0, metadata={"help": "Seconds to wait for the response."})
    retransmit: float = field(default=1.0, metadata={
        "help": "With the client key: seconds of silence after which a new initiation is sent (new "
                "sender index and ephemeral key, newer timestamp), until the timeout; 0 sends one."})
    config: str | None = field(default=None, metadata={"help": "TOML or wg-quick file with the keys."})


def _wg_quick(text: str) -> dict:
    out: dict = {}
    section = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]").lower()
        elif "=" in line:
            k, v = (x.strip() for x in line.split("=", 1))
            key = {("interface", "PrivateKey"): "private_key", ("peer", "PublicKey"): "public_key",
                   ("peer", "PresharedKey"): "preshared_key"}.get((section, k))
            if key:
                out[key] = v
    return out


def _key(value: object, what: str) -> bytes | None:
    if not value:
        return None
    try:
        return wire.decode_key(str(value))
    except wire.WireGuardWireError as exc:
        raise ConfigError(f"{what}: {exc}") from None


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """Initiation -> response; records ``connect`` and ``wireguard_handshake``."""
    t, cfg = target_and_config(target, "wireguard", 51820, options.config)
    if "text" in cfg:
        cfg = {**cfg, **_wg_quick(cfg["text"])}
    server_pub = _key(t.params.get("pubkey") or options.pubkey or cfg.get("public_key"), "server public key")
    client_priv = _key(options.private_key or cfg.get("private_key"), "client private key")
    psk = _key(options.preshared_key or cfg.get("preshared_key"), "preshared key")
    timeout = float(cfg.get("timeout", options.timeout))
    if server_pub and client_priv:
        mode = "handshake"
    elif server_pub:
        mode = "unknown_peer"
    else:
        mode = "random_responder"
    static = client_priv if mode == "handshake" else None
    ini = wire.Initiator(server_pub or os.urandom(32), static, psk)
    rec = new_recorder(net)
    sock, conn = udp_open(rec, net, t)
    if sock is None:
        return rec.observations
    step = rec.begin(
        "wireguard_handshake", conn.id, address=t.address, mode=mode, response_expected=mode == "handshake",
        sender_index=ini.sender_index, client_public_key=ini.static_public.hex() if mode == "handshake" else None,
        preshared_key=psk is not None,
    )
    responses: list[dict] = []
    fields: dict = {"responses": responses}
    # Only with the client key is an answer expected: silence then gets new initiations, as WireGuard
    # itself retransmits (REKEY_TIMEOUT, 5 s in the whitepaper, §6.1). One lost datagram, or a server
    # dropping an initiation of this peer that came within 20 ms of another (wireguard-go's flood limit)
    # or with an older timestamp (its replay check), must not read as blocking.
    retransmit = float(cfg.get("retransmit", options.retransmit)) if mode == "handshake" else 0.0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    by_index = {ini.sender_index: ini}
    initiations: list[float] = []
    try:
        sent = 0
        valid = None
        error = None
        cookie_retry = False
        failure = None
        current = ini
        while True:
            packet = current.initiation()
            initiations.append(round(rec.now(), 6))
            wait = deadline - loop.time()
            if retransmit > 0:
                wait = min(wait, retransmit * random.uniform(1.0, 1.1))  # jitter, as wg's REKEY_TIMEOUT_JITTER
            res = await udp_exchange(rec, sock, [packet], timeout=max(wait, 0.0), stop=lambda d: True)
            sent += res.bytes_sent
            failure = res.failure
            pending = list(res.datagrams)
            while pending:
                at, data = pending.pop(0)
                item: dict = {"t": round(at, 6), "size": len(data)}
                responses.append(item)
                try:
                    msg = wire.parse_message(data)
                    item["type"] = msg.name
                    owner = by_index.get(msg.receiver, current) if msg.receiver is not None else current
                    if msg.type == wire.COOKIE_REPLY and mode == "handshake" and not cookie_retry:
                        # the server is under load and wants mac2: retry once with the cookie, as wg does
                        cookie = owner.cookie_from_reply(data)
                        cookie_retry = True
                        again = owner.initiation(cookie=cookie)
                        retry = await udp_exchange(rec, sock, [again], timeout=timeout, stop=lambda d: True)
                        sent += retry.bytes_sent
                        pending.extend(retry.datagrams)
                        continue
                    if msg.type == wire.RESPONSE and mode == "handshake":
                        owner.consume_response(data)
                        item["valid"] = True
                        valid, ini = msg, owner
                        break
                except wire.WireGuardWireError as exc:
                    item["error"] = str(exc)
                    error = error or str(exc)
            # any answer ends it (the path works; a bad answer is the server's word); so do an ICMP
            # error, the timeout, and a single-initiation run
            if responses or res.failure not in (None, GENERIC_TIMEOUT) or retransmit <= 0:
                break
            if deadline - loop.time() <= 0.05:
                break
            current = wire.Initiator(current.responder_public, static, psk)
            by_index[current.sender_index] = current
        fields.update(bytes_sent=sent, cookie_retry=cookie_retry, initiations_sent=len(initiations),
                      initiation_times=initiations, sender_indexes=list(by_index))
        if valid is not None:
            try:
                sock.send(ini.keepalive())  # as a real peer does: confirms the session to the server
                fields["keepalive_sent"] = True
            except OSError:
                fields["keepalive_sent"] = False
            step.ok(**fields, server_sender_index=valid.sender)
        elif mode != "handshake":
            if failure == "connection_refused":
                step.fail(failure, **fields)
            else:
                # nothing (or something unexpected) came back where nothing was expected
                step.ok(**fields, outcome="no_response_expected" if not responses else "unexpected_response")
        else:
            fail_unanswered(step, fields, parse_error=error, responses=responses,
                            wanted="handshake response among the datagrams", failure=failure)
    finally:
        sock.close()
    return rec.observations


target_from_url = url_targets(NAME)
