"""The control helper: an HTTP JSON API that runs censorscope probes from an uncensored host.

A measurement from inside a censored network means little without the same
measurement made from outside at the same time. ``censorscope helper serve``
runs this app (Starlette on uvicorn) on a VPS; ``censorscope run --control URL``
asks it for a control of every measurement (``censorscope.measure.control``).

Endpoints (docs/helper.md has the full reference)::

    GET  /v1/health    liveness, version and the probes offered (no token needed)
    GET  /v1/whoami    the caller's address as the helper sees it
    POST /v1/measure   {"probe", "target", "options"} -> the probe's observations

``/v1/measure`` runs the *same probe module* a vantage runs (from
``censorscope.probes.registry``), so a control is directly comparable with the
measurement. Safety, in the order a request meets it:

1. per-client token bucket (429 with ``Retry-After``), also charged for bad tokens;
2. bearer token when one is configured (401; compared in constant time);
3. request size cap (413) and schema checks (400);
4. option clamps: timeouts, body sizes and transfer caps never exceed the
   helper's limits, whatever the caller asks; the VPN probes take only an
   allow-list of plain options per probe, never a file path, program or
   secret, and their repetitions are capped (``helper_vpn``);
5. destination policy (``helper_policy``): every host is resolved and every
   address checked before anything is sent (403), and a run-time guard
   checks each socket the probe opens;
6. a concurrency limit and a wall-clock limit on the probe run;
7. a cap on the response: over-long strings are cut, and an answer still over
   the total cap has its observations dropped (``failure: helper_response_too_large``).

Every request is logged as one JSON line on the ``censorscope.helper`` logger
(time, client, method, path, status, probe, target, outcome, duration). The
token is never logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import logging
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from censorscope import __version__
from censorscope.measure import helper_vpn
from censorscope.measure.helper_policy import (
    HELPER_PROBES,
    AddressPolicy,
    RefusedDestination,
    check_destinations,
    destinations,
    guarded,
)
from censorscope.measure.records import utc_iso
from censorscope.probes import registry
from censorscope.probes.errors import CensorscopeError
from censorscope.probes.net import Net, split_host_port

log = logging.getLogger("censorscope.helper")

#: Upper bounds applied to options of these names, whatever the request says.
OPTION_CAPS: dict[str, float] = {
    "timeout": 15.0,  # every probe's per-operation or total timeout
    "hold_window": 3.0,  # dns: listening for late (real) answers after an injected one
    "max_redirects": 10,  # http, web
    "max_body_bytes": 1024 * 1024,  # http, web: bytes of the body read
    "body_head_kib": 64,  # http, web: text of the body returned
    "http_timeout": 20.0,  # web: the whole HTTP round trip
    "max_time": 15.0,  # throughput
    "max_bytes": 20 * 1024 * 1024,  # throughput
}
#: Lower bounds (a 1 ms sampling interval would make an enormous answer).
OPTION_FLOORS: dict[str, float] = {"interval_ms": 20}


@dataclass
class HelperConfig:
    """Everything the helper app needs; the CLI fills it from flags.

    ``rate`` requests per second per client with bursts of ``burst``;
    ``resolver``: ``IP[:PORT]`` the helper resolves names with (and gives to
    probes that take a resolver and got none); None: the host's resolver.
    """

    token: str | None = None
    allow: list[str] = field(default_factory=list)
    resolver: str | None = None
    rate: float = 5.0
    burst: int = 20
    max_concurrency: int = 32
    max_runtime: float = 60.0
    max_request_bytes: int = 16 * 1024
    max_string_chars: int = 64 * 1024
    max_response_bytes: int = 2 * 1024 * 1024
    resolve_timeout: float = 5.0
    probes: tuple[str, ...] = HELPER_PROBES


class TokenBucket:
    """Per-client token buckets: ``rate`` tokens/s, at most ``burst`` stored.

    Memory stays bounded: when more than ``max_clients`` are tracked, full
    (idle) buckets are forgotten, then the oldest ones.
    """

    def __init__(self, rate: float, burst: int, *, clock: typing.Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self._clock, self._max = rate, float(burst), clock, max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last update)

    def take(self, client: str) -> float:
        """Spend one token; return 0 when allowed, else the seconds until one is available."""
        now = self._clock()
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[client] = (tokens - 1, now)
            self._prune()
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1 - tokens) / self.rate

    def _prune(self) -> None:
        if len(self._buckets) <= self._max:
            return
        now = self._clock()
        for client, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * self.rate >= self.burst:
                del self._buckets[client]
        while len(self._buckets) > self._max:
            del self._buckets[next(iter(self._buckets))]


class BadRequest(Exception):
    """The request cannot be served as sent (HTTP 400)."""


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


@functools.lru_cache(maxsize=64)
def _type_hints(cls: type) -> dict[str, Any]:
    """The field types of an Options dataclass (evaluating string annotations costs ~0.5 ms)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def options_from_json(cls: type, values: Any) -> Any:
    """Build a probe's Options dataclass from a JSON object, checking names and types."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise BadRequest("options must be a JSON object")
    hints = _type_hints(cls)
    names = set(hints)
    unknown = set(values) - names
    if unknown:
        raise BadRequest(f"unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in values.items():
        if not _json_type_ok(hints[key], value):
            raise BadRequest(f"option {key!r} has the wrong type ({type(value).__name__})")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise BadRequest(f"bad options: {e}") from None


def _json_type_ok(tp: Any, value: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return any(_json_type_ok(a, value) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(_json_type_ok(item, v) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True  # types the helper does not know: let the probe validate


def clamp_options(options: Any) -> list[str]:
    """Apply OPTION_CAPS / OPTION_FLOORS in place; return the names that were changed."""
    changed = []
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        new = value
        if f.name in OPTION_CAPS and value > OPTION_CAPS[f.name]:
            new = type(value)(OPTION_CAPS[f.name])
        if f.name in OPTION_FLOORS and value < OPTION_FLOORS[f.name]:
            new = type(value)(OPTION_FLOORS[f.name])
        if new != value:
            setattr(options, f.name, new)
            changed.append(f.name)
    return changed


def cap_strings(value: Any, limit: int) -> tuple[Any, int]:
    """A copy of ``value`` with every string longer than ``limit`` cut; and how many were cut."""
    if isinstance(value, str):
        return (value[:limit], 1) if len(value) > limit else (value, 0)
    if isinstance(value, list):
        out, n = [], 0
        for v in value:
            c, k = cap_strings(v, limit)
            out.append(c)
            n += k
        return out, n
    if isinstance(value, dict):
        d, n = {}, 0
        for k, v in value.items():
            c, m = cap_strings(v, limit)
            d[k] = c
            n += m
        return d, n
    return value, 0


class HelperApp:
    """The helper's request handling; ``app`` is the ASGI application."""

    def __init__(self, config: HelperConfig) -> None:
        self.config = config
        own = []
        if config.resolver is not None:
            own.append(split_host_port(config.resolver, 53)[0])
        else:
            from censorscope.probes.dns import resolver_from_resolv_conf

            system = resolver_from_resolv_conf()
            if system is not None:
                own.append(system.split("%")[0])
        self.policy = AddressPolicy.build(config.allow, own)
        self.buckets = TokenBucket(config.rate, config.burst)
        self.slots = asyncio.Semaphore(config.max_concurrency)
        self.net = Net(resolver=config.resolver)
        self._token = config.token.encode() if config.token else None
        self.app = Starlette(routes=[
            Route("/v1/health", self.health, methods=["GET"]),
            Route("/v1/whoami", self.whoami, methods=["GET"]),
            Route("/v1/measure", self.measure, methods=["POST"]),
        ])

    # --- the gate every endpoint but health passes ----------------------------------------
    def _client(self, request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def _gate(self, request: Request, info: dict[str, Any]) -> Response | None:
        wait = self.buckets.take(self._client(request))
        if wait > 0:
            info["outcome"] = "rate_limited"
            return _json({"error": "rate_limited", "retry_after": round(wait, 3)}, 429,
                         {"Retry-After": str(max(1, int(wait + 0.999)))})
        if self._token is not None:
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)
            if not ok:
                info["outcome"] = "unauthorized"
                return _json({"error": "unauthorized"}, 401, {"WWW-Authenticate": 'Bearer realm="censorscope-helper"'})
        return None

    def _log(self, request: Request, status: int, t0: float, info: dict[str, Any]) -> None:
        line = {
            "time": utc_iso(time.time()), "client": self._client(request), "method": request.method,
            "path": request.url.path, "status": status, "probe": info.get("probe"),
            "target": info.get("target"), "outcome": info.get("outcome"),
            "duration": round(time.monotonic() - t0, 4),
        }
        log.info(orjson.dumps(line).decode())

    # --- endpoints ----------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        """Liveness: version and the probes offered."""
        return _json({"status": "ok", "software": {"name": "censorscope", "version": __version__},
                      "probes": list(self.config.probes)})

    async def whoami(self, request: Request) -> Response:
        """Echo the caller's address, so a vantage learns its public IP without storing it."""
        t0, info = time.monotonic(), {}
        refused = self._gate(request, info)
        if refused is not None:
            self._log(request, refused.status_code, t0, info)
            return refused
        info["outcome"] = "ok"
        self._log(request, 200, t0, info)
        client = request.client
        return _json({"ip": client.host if client else None, "port": client.port if client else None})

    async def measure(self, request: Request) -> Response:
        """Run one probe on one target and return its observations."""
        t0, info = time.monotonic(), {}
        response = self._gate(request, info)
        if response is None:
            try:
                response = await self._measure(request, info)
            except BadRequest as e:
                info["outcome"] = "bad_request"
                response = _json({"error": "bad_request", "detail": str(e)}, 400)
            except RefusedDestination as e:
                info["outcome"] = "refused"
                response = _json({"error": "forbidden_target", "detail": str(e)}, 403)
            except Exception:
                log.exception("helper: internal error")
                info["outcome"] = "error"
                response = _json({"error": "internal_error"}, 500)
        self._log(request, response.status_code, t0, info)
        return response

    async def _read_body(self, request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.config.max_request_bytes:
            raise _TooLarge()
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.config.max_request_bytes:
                raise _TooLarge()
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise BadRequest(f"body is not JSON: {e}") from None

    async def _measure(self, request: Request, info: dict[str, Any]) -> Response:
        try:
            body = await self._read_body(request)
        except _TooLarge:
            info["outcome"] = "request_too_large"
            return _json({"error": "request_too_large", "limit": self.config.max_request_bytes}, 413)
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        probe, target = body.get("probe"), body.get("target")
        unknown = set(body) - {"probe", "target", "options"}
        if unknown:
            raise BadRequest(f"unknown key(s) {', '.join(sorted(unknown))}")
        if not isinstance(probe, str) or probe not in self.config.probes:
            raise BadRequest(f"probe must be one of {', '.join(self.config.probes)}")
        if not isinstance(target, str) or not target or len(target) > 2048:
            raise BadRequest("target must be a non-empty string of at most 2048 characters")
        info["probe"], info["target"] = probe, target
        try:
            module = registry.load(probe)
        except (ImportError, CensorscopeError):
            raise BadRequest(f"probe {probe!r} is not installed on this helper") from None
        vpn = probe in helper_vpn.VPN_PROBES
        if vpn:
            try:
                helper_vpn.check_request(probe, target, body.get("options"))
            except ValueError as e:
                raise BadRequest(str(e)) from None
        options = options_from_json(module.Options, body.get("options"))
        if self.config.resolver is not None and getattr(options, "resolver", "absent") is None:
            options.resolver = self.config.resolver
        clamped = clamp_options(options)
        if vpn:
            try:
                clamped += [n for n in helper_vpn.apply_caps(probe, options, self.config.max_runtime, target)
                            if n not in clamped]
            except ValueError as e:
                raise BadRequest(str(e)) from None
        await check_destinations(self.policy, destinations(probe, target, options), self.config.resolver,
                                 self.config.resolve_timeout)
        result = await self._run(module, target, options)
        result["options"] = dataclasses.asdict(options)
        if clamped:
            result["clamped_options"] = clamped
        info["outcome"] = "ok" if result.get("failure") is None else str(result["failure"])
        return self._capped(result)

    async def _run(self, module: types.ModuleType, target: str, options: Any) -> dict[str, Any]:
        start = time.time()
        t0 = time.monotonic()
        failure: str | None = None
        observations: list[dict[str, Any]] = []
        async with self.slots:
            with guarded(self.policy) as guard:
                try:
                    obs = await asyncio.wait_for(module.measure(target, self.net, options), self.config.max_runtime)
                    observations = [o.to_dict() for o in obs]
                except TimeoutError:
                    failure = "helper_timeout"
                except CensorscopeError as e:
                    raise BadRequest(f"{type(e).__name__}: {e}") from None
        out: dict[str, Any] = {
            "probe": module.NAME, "probe_version": getattr(module, "VERSION", "0"), "target": target,
            "measurement_start_time": utc_iso(start), "runtime": round(time.monotonic() - t0, 6),
            "failure": failure, "observations": observations,
            "helper": {"software": {"name": "censorscope", "version": __version__}},
        }
        if guard.refused:
            out["refused_destinations"] = guard.refused
        return out

    def _capped(self, result: dict[str, Any]) -> Response:
        result["observations"], cut = cap_strings(result["observations"], self.config.max_string_chars)
        if cut:
            result["truncated_strings"] = cut
        data = orjson.dumps(result)
        if len(data) > self.config.max_response_bytes:
            result["observations"] = []
            result["failure"] = "helper_response_too_large"
            result["response_bytes"] = len(data)
            data = orjson.dumps(result)
        return Response(data, media_type="application/json")


class _TooLarge(Exception):
    pass


def create_app(config: HelperConfig) -> Starlette:
    """The ASGI application for ``config``."""
    return HelperApp(config).app
