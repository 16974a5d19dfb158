"""Probe ``throughput``: download an object and record how fast the bytes arrived.

Throttling is a rate, not a failure, so this probe samples the cumulative
number of body bytes every ``interval_ms`` while it downloads (a sampler task
runs beside the reader, so a stall shows up as flat samples rather than as a
gap), and stops at ``max_bytes`` or ``max_time`` whichever comes first.

Operations recorded: ``resolve`` (only when the host is a name and no
``--address`` was given), ``connect``, ``tls_handshake`` (https; done without
certificate verification: the ``tls`` probe judges certificates, this probe
only needs the bytes to flow), and ``throughput`` (parent: the handshake or
the connection). Fields are documented in docs/observations.md.

Redirects are not followed (the ``status`` is recorded): point it at the
object itself.

To tell throttling from a slow path, run it twice on the same address: once
with the real SNI and once with ``--sni`` set to an innocuous name (the
reference), and compare with ``censorscope.analysis.throughput_stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

from censorscope import __version__
from censorscope.probes.errors import InvalidTarget
from censorscope.probes.failures import EOF_ERROR, HTTP_PROTOCOL_ERROR, classify
from censorscope.probes.net import Net, format_host_port, split_host_port
from censorscope.probes.observation import Observation, Recorder

NAME = "throughput"
VERSION = "1"
SUMMARY = "Download an object and sample its transfer rate over time (throttling)."
TARGET_HELP = "URL"

_READ_SIZE = 64 * 1024


@dataclass
class Options:
    """Options of the throughput probe (each becomes a CLI option)."""

    address: str | None = field(default=None, metadata={
        "help": "Connect to this IP address instead of resolving the URL's host (Host and SNI stay the URL's)."})
    sni: str | None = field(default=None, metadata={
        "help": "SNI to send (default: the URL's host). An innocuous name on the same address gives a reference."})
    resolver: str | None = field(default=None, metadata={
        "help": "Resolver IP[:PORT] for the URL's host when it is a name and --address is not given."})
    max_bytes: int = field(default=10 * 1024 * 1024, metadata={"help": "Stop after this many body bytes."})
    max_time: float = field(default=10.0, metadata={"help": "Stop the transfer after this many seconds."})
    interval_ms: int = field(default=100, metadata={"help": "Sampling interval of the cumulative byte count."})
    timeout: float = field(default=10.0, metadata={
        "help": "Timeout (s) for resolving, connecting, the TLS handshake and the response headers."})


@dataclass(frozen=True)
class _Url:
    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line
    host_header: str


def target_from_url(url: str) -> str | None:
    """Campaign input -> target: any http(s) URL is measured as itself."""
    return url if url.startswith(("http://", "https://")) else None


def _parse_url(url: str) -> _Url:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidTarget(f"bad URL {url!r}: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidTarget(f"throughput needs an http:// or https:// URL, got {url!r}")
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname
    hp = format_host_port(host, port) if port and port != default else (f"[{host}]" if ":" in host else host)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Url(parts.scheme, host, port or default, path, hp)


def _ip_or_none(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _check_options(options: Options) -> None:
    if options.max_bytes <= 0 or options.max_time <= 0 or options.timeout <= 0:
        raise InvalidTarget("max_bytes, max_time and timeout must be positive")
    if not 1 <= options.interval_ms <= 60_000:
        raise InvalidTarget("interval_ms must be between 1 and 60000")
    if options.address is not None and _ip_or_none(options.address) is None:
        raise InvalidTarget(f"--address must be an IP address, got {options.address!r}")


async def _resolve(rec: Recorder, host: str, resolver: str, timeout: float) -> str | None:
    """Resolve ``host`` (A, then AAAA) with an explicit resolver; record a ``resolve``."""
    import dns.asyncresolver
    import dns.resolver

    try:
        ip, port = split_host_port(resolver, 53)
    except ValueError as e:
        raise InvalidTarget(f"bad resolver {resolver!r}: {e}") from None
    res = dns.asyncresolver.Resolver(configure=False)
    res.nameservers = [ip]
    res.port = port
    res.lifetime = timeout
    step = rec.begin("resolve", query_name=host, resolver=format_host_port(ip, port))
    addresses: list[str] = []
    error: BaseException | None = None
    for qtype in ("A", "AAAA"):
        try:
            answer = await res.resolve(host, qtype, search=False)
            addresses += [r.to_text() for r in answer]
        except dns.resolver.NoAnswer as e:
            error = error or e
        except Exception as e:  # noqa: BLE001 - every resolver failure is data
            error = e
            break
        if addresses:
            break
    if addresses:
        step.ok(addresses=addresses)
        return addresses[0]
    step.fail(error or dns.resolver.NoAnswer(), addresses=[])
    return None


def worst_case(target: str, options: Options) -> float:
    """Upper bound (s) of one measurement, for the campaign runner's watchdog.

    Resolution (a name without ``--address``): dnspython's ``lifetime`` for A,
    then for AAAA; connect and TLS: ``timeout`` each; the transfer ends by
    ``timeout`` without headers and by ``max_time`` with them, whichever is
    later. The connection is aborted, not closed: no wait there.
    """
    try:
        url = _parse_url(target)
    except InvalidTarget:
        return 0.0  # measure refuses the target
    resolve = 0.0 if options.address or _ip_or_none(url.host) else 2 * options.timeout
    tls = options.timeout if url.scheme == "https" else 0.0
    return resolve + options.timeout + tls + max(options.timeout, options.max_time)


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """Download ``target`` once and return its observations (see module docstring)."""
    url = _parse_url(target)
    _check_options(options)
    rec = Recorder(net.clock)
    ip = options.address or _ip_or_none(url.host)
    if ip is None:
        resolver = options.resolver or net.resolver
        if resolver is None:
            raise InvalidTarget(f"{url.host!r} is a name: give --address IP or --resolver IP[:PORT]")
        ip = await _resolve(rec, url.host, resolver, options.timeout)
        if ip is None:
            return rec.observations
    address = format_host_port(ip, url.port)
    step = rec.begin("connect", address=address, ip=ip, port=url.port, proto="tcp")
    try:
        reader, writer = await net.open_tcp(ip, url.port, timeout=options.timeout)
    except Exception as e:  # noqa: BLE001 - network failures are data
        step.fail(e)
        return rec.observations
    sock = writer.get_extra_info("sockname")
    parent = step.ok(local_port=sock[1] if sock else None).id
    try:
        server_name = None
        if url.scheme == "https":
            server_name = options.sni or (None if _ip_or_none(url.host) else url.host)
            tls = rec.begin("tls_handshake", parent_id=parent, address=address, server_name=server_name,
                            alpn_offered=["http/1.1"])
            try:
                await net.start_tls(writer, net.tls_context(verify=False, alpn=["http/1.1"]), server_name,
                                    timeout=options.timeout)
            except Exception as e:  # noqa: BLE001
                tls.fail(e)
                return rec.observations
            ssl_obj = writer.get_extra_info("ssl_object")
            parent = tls.ok(
                tls_version=ssl_obj.version() if ssl_obj else None,
                cipher=ssl_obj.cipher()[0] if ssl_obj and ssl_obj.cipher() else None,
                alpn=ssl_obj.selected_alpn_protocol() if ssl_obj else None,
            ).id
        await _transfer(rec, parent, reader, writer, url, target, address, server_name, options)
    finally:
        writer.transport.abort()  # never linger: a half-closed throttled flow keeps the censor busy
    return rec.observations


async def _transfer(
    rec: Recorder, parent: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, url: _Url,
    target: str, address: str, server_name: str | None, options: Options,
) -> None:
    """Send the GET, then read and sample the body until complete, max_bytes or max_time."""
    step = rec.begin(
        "throughput", parent_id=parent, url=target, address=address, server_name=server_name,
        max_bytes=options.max_bytes, max_time=options.max_time, interval=options.interval_ms / 1000,
    )
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target=url.target, headers=[
        ("Host", url.host_header), ("User-Agent", f"censorscope/{__version__}"),
        ("Accept", "*/*"), ("Accept-Encoding", "identity"), ("Connection", "close"),
    ])
    state = {"bytes": 0}
    samples: list[list[float]] = []
    result: dict[str, object] = {"status": None, "content_length": None, "ttfb": None}
    t_send = rec.now()

    async def sampler() -> None:
        interval = options.interval_ms / 1000
        while True:
            samples.append([round(rec.now(), 6), state["bytes"]])
            await asyncio.sleep(interval)

    sampling = asyncio.create_task(sampler())
    failure: BaseException | str | None = None
    stopped = "complete"
    try:
        writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
        await writer.drain()
        deadline = t_send + options.max_time
        header_deadline = t_send + options.timeout
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                limit = header_deadline if result["status"] is None else deadline
                remaining = limit - rec.now()
                if remaining <= 0:
                    if result["status"] is None:
                        failure = TimeoutError("no response headers")
                    else:
                        stopped = "max_time"
                    break
                try:
                    data = await asyncio.wait_for(reader.read(_READ_SIZE), remaining)
                except TimeoutError:
                    if result["status"] is None:
                        failure = TimeoutError("no response headers")
                    else:
                        stopped = "max_time"
                    break
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                result["status"] = event.status_code
                length = dict(event.headers).get(b"content-length")
                result["content_length"] = int(length) if length and length.isdigit() else None
            elif isinstance(event, h11.Data):
                if result["ttfb"] is None:
                    result["ttfb"] = round(rec.now() - t_send, 6)
                state["bytes"] += len(event.data)
                if state["bytes"] >= options.max_bytes:
                    stopped = "max_bytes"
                    break
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    except h11.RemoteProtocolError as e:
        # a close before the announced length arrived is an EOF, anything else a bad response
        failure = EOF_ERROR if "closed connection" in str(e) else HTTP_PROTOCOL_ERROR
    except Exception as e:  # noqa: BLE001 - resets, timeouts: data
        failure = e
    finally:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
    t_end = rec.now()
    samples.append([round(t_end, 6), state["bytes"]])
    ttfb = result["ttfb"]
    duration = t_end - t_send
    body_time = duration - ttfb if isinstance(ttfb, float) else 0.0
    fields = dict(
        status=result["status"], content_length=result["content_length"], bytes=state["bytes"],
        duration=round(duration, 6), ttfb=ttfb,
        rate_bps=round(8 * state["bytes"] / body_time, 1) if body_time > 0 else None,
        stopped=None if failure is not None else stopped, samples=samples,
    )
    if failure is not None:
        step.fail(failure if isinstance(failure, str) else classify(failure), **fields)
    else:
        step.ok(**fields)
