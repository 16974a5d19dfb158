"""The client side of the control helper: the runner's ``ControlProvider``.

``ControlClient(url, token).control_for(probe, target, options)`` asks a
``censorscope helper serve`` instance to run the same probe on the same target
and returns what it saw; the runner stores it as the measurement's
``control``. It never raises for network or helper trouble: a control that
could not be obtained is recorded as ``{"failure": "helper_...", "observations": []}``
so the verdict engine sees *why* there is no control. The rule for readers:
a non-null ``control.failure`` means "no usable control"; a null one means the
helper ran the probe, and its ``observations`` say what the network did.

Failure strings (besides the helper's own ``helper_timeout`` and
``helper_response_too_large``): ``helper_unreachable: <failure>`` (the failure
is from the usual vocabulary, e.g. ``connection_refused``),
``helper_unauthorized``, ``helper_refused: <why>`` (a forbidden target),
``helper_bad_request: <why>``, ``helper_rate_limited``, ``helper_error: HTTP <code>``,
``helper_bad_response``, and ``helper_not_comparable: <why>`` (no request
made: the vantage measured a VPN probe with an option the helper never takes,
such as a ``config`` file or a WireGuard private key, so the helper could not
repeat the same measurement).

What is sent: the probe's options as JSON, except ``resolver`` (unless it is a
DoH URL). The vantage's resolver is usually its ISP's, private or closed to
outsiders; the control instead asks the helper's own uncensored resolver,
which is the comparison a DNS verdict needs. For the VPN probes only the
helper's allow-listed options are sent (``helper_vpn.vpn_control_options``).
Probes the helper does not offer get no control (``None``), without a request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from censorscope.measure.helper_policy import HELPER_PROBES
from censorscope.measure.helper_vpn import VPN_PROBES, vpn_control_options
from censorscope.probes.errors import ConfigError
from censorscope.probes.failures import classify
from censorscope.probes.net import Net

#: How long a control may wait in total, including waits for the helper's rate limit.
DEFAULT_DEADLINE = 180.0
#: Longest single wait honoured from a Retry-After header.
MAX_RETRY_AFTER = 30.0
#: Seconds an idle pooled connection to the helper is reused. Well below the helper's own idle
#: timeout (``cli_helper.KEEP_ALIVE_TIMEOUT``; uvicorn's default is 5 s): at equal timeouts (httpx's
#: default is also 5 s) a request sent just as the helper closes the idle connection fails with
#: ``broken_pipe``, which left one control missing in the slow-server lab (issue #4).
KEEPALIVE_EXPIRY = 2.0
#: Connection-level failures of a request on a connection the helper closed under us (no response
#: came): retried once on a new connection. Timeouts and refused connects are not retried.
_STALE_CONNECTION = (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError)


def options_for_control(probe: str, options: Any) -> dict[str, Any]:
    """The JSON options sent to the helper for ``options`` (a probe Options dataclass or a dict)."""
    if options is None:
        return {}
    d = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)
    resolver = d.get("resolver")
    if "resolver" in d and not (isinstance(resolver, str) and resolver.startswith("https://")):
        del d["resolver"]
    return d


def _failure(text: str) -> dict[str, Any]:
    return {"failure": text, "observations": []}


class ControlClient:
    """Asks one control helper for controls (async; implements the runner's ``ControlProvider``).

    ``url``: the helper's base URL (``https://helper.example:8742``); ``token``:
    its bearer token; ``max_in_flight``: concurrent requests to the helper;
    ``deadline``: seconds one control may take including rate-limit waits;
    ``transport``: an httpx transport for tests.
    """

    def __init__(
        self, url: str, token: str | None = None, *, max_in_flight: int = 8, deadline: float = DEFAULT_DEADLINE,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"control helper URL must be http(s)://HOST[:PORT], got {url!r}")
        self.base = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path.rstrip('/')}"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._deadline = deadline
        self._max_in_flight = max_in_flight
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None

    def __repr__(self) -> str:  # never show the token
        return f"ControlClient({self.base!r})"

    def _http(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A client belongs to one event loop; a new loop (a new asyncio.run) gets a new one.
            # The helper's certificate is verified (system store + $CENSORSCOPE_EXTRA_CA); naming the
            # ALPN gets Net's cached verifying context (tests/net/test_helper_cli.py checks rejection).
            self._client = httpx.AsyncClient(
                base_url=self.base, headers=self._headers, transport=self._transport, trust_env=False,
                verify=Net().tls_context(alpn=["http/1.1"]), timeout=httpx.Timeout(10.0, read=120.0),
                limits=httpx.Limits(max_connections=self._max_in_flight, keepalive_expiry=KEEPALIVE_EXPIRY),
            )
            self._slots = asyncio.Semaphore(self._max_in_flight)
            self._loop = loop
        assert self._slots is not None
        return self._client, self._slots

    async def aclose(self) -> None:
        """Close the connection pool (optional: the runner may simply drop the client)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response | dict[str, Any]:
        """The helper's response, waiting out 429s until the deadline; a failure dict on trouble.

        A request that fails because the helper had closed the (pooled) connection is sent once
        more on a new connection. Usually the helper never saw it; rarely (the helper restarting
        mid-response) it had already measured, and the control is then measured twice: the
        second result is the one stored."""
        client, slots = self._http()
        end = time.monotonic() + self._deadline
        stale_retry = True
        while True:
            try:
                async with slots:
                    response = await client.request(method, path, json=body)
            except _STALE_CONNECTION as e:
                if stale_retry:
                    stale_retry = False
                    continue
                return _failure(f"helper_unreachable: {classify(e)}")
            except httpx.HTTPError as e:
                return _failure(f"helper_unreachable: {classify(e)}")
            if response.status_code != 429:
                return response
            wait = _retry_after(response)
            if time.monotonic() + wait > end:
                return _failure("helper_rate_limited")
            await asyncio.sleep(wait)

    async def control_for(self, probe: str, target: str, options: Any) -> dict[str, Any] | None:
        """The helper's measurement of ``probe`` on ``target`` (stored as ``control``), or None.

        None when the helper does not offer ``probe``; otherwise a dict that
        always has ``failure`` and ``observations``.
        """
        if probe not in HELPER_PROBES:
            return None
        if probe in VPN_PROBES:
            sent, why = vpn_control_options(probe, target, options)
            if sent is None:
                return _failure(f"helper_not_comparable: {why}")
        else:
            sent = options_for_control(probe, options)
        payload = {"probe": probe, "target": target, "options": sent}
        got = await self._request("POST", "/v1/measure", payload)
        if isinstance(got, dict):
            return got
        result = _decode(got)
        if result is None:
            return _failure("helper_bad_response")
        if got.status_code == 200:
            if not isinstance(result.get("observations"), list):
                return _failure("helper_bad_response")
            result.setdefault("failure", None)
            result.setdefault("helper", {})["url"] = self.base
            return result
        detail = str(result.get("detail", ""))[:300]
        if got.status_code == 401:
            return _failure("helper_unauthorized")
        if got.status_code == 403:
            return _failure(f"helper_refused: {detail}")
        if got.status_code in (400, 413):
            return _failure(f"helper_bad_request: {detail or result.get('error', '')}")
        return _failure(f"helper_error: HTTP {got.status_code}")

    async def whoami(self) -> str | None:
        """This vantage's address as the helper sees it (its public IP behind NAT), or None."""
        got = await self._request("GET", "/v1/whoami")
        if isinstance(got, dict) or got.status_code != 200:
            return None
        result = _decode(got)
        ip = result.get("ip") if result else None
        return ip if isinstance(ip, str) else None


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(MAX_RETRY_AFTER, max(0.05, float(response.headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


def _decode(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def make_control_provider(url: str, token: str | None) -> ControlClient:
    """The factory ``censorscope run --control URL [--control-token T]`` uses."""
    return ControlClient(url, token)
