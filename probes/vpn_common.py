"""Plumbing shared by the VPN and circumvention probes.

* ``parse_target``: ``scheme://IP:PORT?key=value`` or plain ``IP:PORT`` into a
  ``Target`` (``target_and_config`` also loads the target's config file). These probes take IP literals only: resolving a name would use
  a resolver the user did not choose (resolve with the ``dns`` probe first).
* ``load_config``: a per-target config file (TOML, or raw text such as an
  ``.ovpn`` file that the probe parses itself).
* ``url_targets``: a probe's ``target_from_url`` (list entries of its scheme).
* ``tcp_connect`` / ``udp_open``: the ``connect`` observation every probe
  records under its protocol operation.
* ``udp_exchange``: send datagrams and keep *every* datagram that comes back
  within a window (censors may inject answers before the real one);
  ``fail_unanswered`` ends an exchange's step when no valid answer came.
* ``proxy_destination``: the ``dest`` a proxy probe asks its proxy for.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from censorscope.probes.errors import ConfigError, InvalidTarget
from censorscope.probes.failures import GENERIC_TIMEOUT, classify
from censorscope.probes.net import Net, format_host_port, split_host_port
from censorscope.probes.observation import Observation, Recorder, Step


@dataclass(frozen=True)
class Target:
    """An endpoint to probe: an IP literal, a port and the URL's query parameters."""

    host: str
    port: int
    params: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """``IP:PORT`` (IPv6 bracketed)."""
        return format_host_port(self.host, self.port)

    @property
    def family(self) -> int:
        """AF_INET or AF_INET6."""
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


def parse_target(target: str, scheme: str, default_port: int | None) -> Target:
    """Parse ``scheme://IP[:PORT][?k=v&...]`` or ``IP[:PORT]`` (port required if no default).

    Raises ``InvalidTarget`` for another scheme, a bad port or a host that is
    not an IP literal.
    """
    text = target.strip()
    params: dict[str, str] = {}
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme != scheme:
            raise InvalidTarget(f"expected a {scheme}:// target, got {target!r}")
        text = parts.netloc
        # unquote, not unquote_plus: base64 keys (?pubkey=...) contain '+'
        for pair in parts.query.split("&"):
            if pair:
                k, _, v = pair.partition("=")
                params[unquote(k)] = unquote(v)
    try:
        host, port = split_host_port(text, default_port)
    except ValueError as exc:
        raise InvalidTarget(f"{target!r}: {exc}") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InvalidTarget(
            f"{target!r}: the {scheme} probe takes an IP address, not a name "
            "(resolve it with the dns probe and a resolver you choose)"
        ) from None
    return Target(host, port, params)


def load_config(path: str | None) -> dict[str, Any]:
    """Read a TOML config file into a dict; ``{}`` when ``path`` is None.

    A file that is not TOML is returned as ``{"text": <contents>}`` so that a
    probe can parse its own native format (e.g. an ``.ovpn`` file). Relative
    paths inside a config are resolved by the probe against ``"_dir"``.
    """
    if not path:
        return {}
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path!r}: {exc}") from None
    text = raw.decode("utf-8", "replace")
    out: dict[str, Any]
    if path.endswith(".toml"):
        try:
            out = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path!r} is not valid TOML: {exc}") from None
    else:
        out = {"text": text}
    out["_dir"] = os.path.dirname(os.path.abspath(path))
    return out


async def tcp_connect(
    rec: Recorder, net: Net, target: Target, timeout: float, parent_id: int | None = None
) -> tuple[asyncio.StreamReader | None, asyncio.StreamWriter | None, Observation]:
    """Open a TCP connection and record it as a ``connect`` observation.

    Returns ``(None, None, obs)`` when the connection failed.
    """
    step = rec.begin("connect", parent_id, address=target.address, ip=target.host, port=target.port, proto="tcp")
    try:
        reader, writer = await net.open_tcp(target.host, target.port, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - every failure is data
        return None, None, step.fail(exc)
    sock = writer.get_extra_info("sockname")
    return reader, writer, step.ok(local_port=sock[1] if sock else None)


#: seconds ``close_writer`` waits for a stream to close (every probe's ``worst_case`` counts it)
CLOSE_WAIT = 2.0


async def close_writer(writer: asyncio.StreamWriter | None) -> None:
    """Close a stream quietly (the peer may already be gone)."""
    if writer is None:
        return
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), CLOSE_WAIT)
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


def udp_open(rec: Recorder, net: Net, target: Target, parent_id: int | None = None) -> tuple[socket.socket | None, Observation]:
    """A connected UDP socket (no packet is sent) and its ``connect`` observation.

    A connected socket lets the kernel report ICMP port-unreachable as
    ``connection_refused`` on the next receive.
    """
    step = rec.begin("connect", parent_id, address=target.address, ip=target.host, port=target.port, proto="udp")
    sock = net.udp_socket(target.family)
    try:
        sock.connect((target.host, target.port))
    except Exception as exc:  # noqa: BLE001
        sock.close()
        return None, step.fail(exc)
    return sock, step.ok(local_port=sock.getsockname()[1])


@dataclass
class UdpResult:
    """What a UDP exchange saw: datagrams with arrival times, or a failure."""

    datagrams: list[tuple[float, bytes]]
    failure: str | None
    bytes_sent: int
    #: how many times the payloads went out (1 + retransmissions on silence)
    transmissions: int = 1


async def udp_exchange(
    rec: Recorder, sock: socket.socket, payloads: list[bytes], *, timeout: float, hold: float = 0.0,
    stop: Any = None, resend_every: float = 0.0,
) -> UdpResult:
    """Send ``payloads`` and collect datagrams until ``timeout`` (or ``hold`` s after ``stop``).

    ``stop(datagram) -> bool`` says that an expected answer arrived; the
    exchange then waits ``hold`` more seconds for late (e.g. real after
    injected) datagrams. With ``resend_every`` > 0 the same payloads go out
    again after each such stretch of silence until the first datagram or the
    timeout, as the protocols' own clients retransmit: one lost datagram on
    a lossy path must not read as blocking. A failure is
    ``generic_timeout_error`` when nothing came, or the classified socket
    error (ICMP unreachable -> refused).
    """
    loop = asyncio.get_running_loop()
    sent = 0
    transmissions = 0
    got: list[tuple[float, bytes]] = []

    async def send_all() -> str | None:
        nonlocal sent, transmissions
        try:
            for p in payloads:
                await loop.sock_sendall(sock, p)
                sent += len(p)
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        transmissions += 1
        return None

    failure = await send_all()
    if failure is not None:
        return UdpResult(got, failure, sent, transmissions)
    deadline = loop.time() + timeout
    next_send = loop.time() + resend_every if resend_every > 0 else None
    while True:
        now = loop.time()
        left = deadline - now
        if left <= 0:
            break
        wait = left if next_send is None or got else min(left, max(next_send - now, 0.0))
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), wait)
        except TimeoutError:
            if next_send is not None and not got and loop.time() < deadline - 0.05:
                failure = await send_all()
                if failure is not None:
                    break
                next_send = loop.time() + resend_every
            continue
        except Exception as exc:  # noqa: BLE001
            failure = classify(exc)
            break
        got.append((rec.now(), data))
        if stop is not None and stop(data):
            deadline = min(deadline, loop.time() + hold)
    if not got and failure is None:
        failure = GENERIC_TIMEOUT
    return UdpResult(got, failure, sent, transmissions)


def fail_unanswered(step: Step, fields: dict[str, Any], *, parse_error: str | None, responses: list[Any],
                    wanted: str, failure: str | None) -> Observation:
    """End ``step`` of an exchange that got no valid answer, most telling cause first.

    A datagram that did not parse is a protocol error; datagrams that parsed
    but were not the answer say ``no <wanted>``; silence keeps the exchange's
    own failure (a timeout, or the ICMP error a connected socket reported).
    """
    if parse_error:
        return step.fail(protocol_failure(parse_error), **fields)
    if responses:
        return step.fail(protocol_failure(f"no {wanted}"), **fields)
    return step.fail(failure or GENERIC_TIMEOUT, **fields)


def proxy_destination(t: Target, options: Any, cfg: dict[str, Any], probe: str) -> tuple[str, str, int]:
    """``(dest as given, host, port)`` for a proxy probe: ``?dest=``, then the option, then the config.

    Raises ``InvalidTarget`` when there is none or it is not ``HOST:PORT``.
    """
    dest = t.params.get("dest") or options.dest or cfg.get("dest")
    if not dest:
        raise InvalidTarget(f"{probe} needs a destination: ?dest=HOST:PORT or --dest")
    try:
        host, port = split_host_port(str(dest))
    except ValueError as exc:
        raise InvalidTarget(f"bad dest: {exc}") from None
    return str(dest), host, port


async def read_exact(reader: asyncio.StreamReader, n: int, timeout: float) -> bytes:
    """``readexactly`` with a timeout (raises what the stream raises)."""
    return await asyncio.wait_for(reader.readexactly(n), timeout)


def protocol_failure(detail: str) -> str:
    """The failure string for a peer that answered bytes that do not parse.

    Kept inside the vocabulary's ``unknown_failure: `` space with a fixed
    ``protocol_error`` tag so analysis can match the prefix.
    """
    from censorscope.probes.failures import UNKNOWN_PREFIX

    return f"{UNKNOWN_PREFIX}protocol_error: {detail}"


def new_recorder(net: Net) -> Recorder:
    """A recorder on the net's clock."""
    return Recorder(net.clock)


def config_param(target: str) -> str | None:
    """The ``config`` query parameter of a URL-form target (a per-target config file), if any."""
    if "://" not in target:
        return None
    for pair in urlsplit(target.strip()).query.split("&"):
        k, _, v = pair.partition("=")
        if unquote(k) == "config" and v:
            return unquote(v)
    return None


def target_and_config(target: str, scheme: str, default_port: int | None,
                      config: str | None) -> tuple[Target, dict[str, Any]]:
    """``parse_target`` and the target's config file: ``?config=`` in the target, else ``config`` (the option)."""
    return parse_target(target, scheme, default_port), load_config(config_param(target) or config)


def config_or_empty(target: str, config: str | None) -> dict[str, Any]:
    """The config ``target_and_config`` would load, or ``{}`` when it cannot be read or parsed.

    For ``worst_case`` functions, which must not raise: the measurement itself
    then reports the bad config.
    """
    try:
        return load_config(config_param(target) or config)
    except (ConfigError, ValueError):
        return {}


def url_targets(scheme: str) -> Callable[[str], str | None]:
    """The ``target_from_url`` of the probe for ``scheme`` (see ``scheme_target``)."""
    def target_from_url(url: str) -> str | None:
        return scheme_target(url, scheme)

    target_from_url.__doc__ = f"A campaign list entry ``{scheme}://...`` is a target; website URLs are not."
    return target_from_url


def scheme_target(url: str, scheme: str) -> str | None:
    """``target_from_url`` of the VPN probes: a list entry ``scheme://...`` is the target itself;
    anything else (a website URL) is not for this probe."""
    return url.strip() if url.strip().lower().startswith(f"{scheme}://") else None


def unread(reader: asyncio.StreamReader) -> bytes:
    """Bytes the stream buffered but nobody read, e.g. a server (or an injector) that spoke before
    our TLS handshake began: ``start_tls`` never sees them, so they are recorded instead."""
    return bytes(getattr(reader, "_buffer", b""))
