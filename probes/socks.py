"""``socks``: SOCKS5 proxy reachability (RFC 1928): greeting, optional RFC 1929 login, CONNECT.

Records the method the proxy chose and the CONNECT reply code for the
destination (``dest``: ``HOST:PORT``, a name is resolved by the proxy, never
by us). A ``succeeded`` reply shows the proxy is reachable *and* relays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from censorscope.probes.net import Net
from censorscope.probes.observation import Observation
from censorscope.probes.vpn_common import (
    CLOSE_WAIT,
    close_writer,
    config_or_empty,
    new_recorder,
    protocol_failure,
    proxy_destination,
    read_exact,
    target_and_config,
    tcp_connect,
    url_targets,
)
from censorscope.probes.wire import socks as wire

NAME = "socks"
VERSION = "0.1.0"
SUMMARY = "SOCKS5 proxy reachability: greeting and CONNECT to a destination."
TARGET_HELP = "socks://IP[:PORT]?dest=HOST:PORT"


@dataclass
class Options:
    """Options of the socks probe."""

    dest: str | None = field(default=None, metadata={"help": "HOST:PORT to CONNECT to (or ?dest= in the target)."})
    username: str | None = field(default=None, metadata={"help": "RFC 1929 username (offers method 2)."})
    password: str | None = field(default=None, metadata={"help": "RFC 1929 password."})
    timeout: float = field(default=10.0, metadata={"help": "Seconds for connect and each read."})
    config: str | None = field(default=None, metadata={"help": "TOML file: dest, username, password, timeout."})


def worst_case(target: str, options: Options) -> float:
    """Upper bound (s) of one measurement, for the campaign runner's watchdog: connect, the method
    choice, the user/password status, the CONNECT reply's head and rest, ``timeout`` each, then
    the close."""
    timeout = float(config_or_empty(target, options.config).get("timeout", options.timeout))
    return 5 * timeout + CLOSE_WAIT


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """Greeting + CONNECT; records ``connect`` and ``proxy_connect``."""
    t, cfg = target_and_config(target, "socks", 1080, options.config)
    _, dhost, dport = proxy_destination(t, options, cfg, NAME)
    user = options.username or cfg.get("username")
    password = options.password or cfg.get("password") or ""
    timeout = float(cfg.get("timeout", options.timeout))
    rec = new_recorder(net)
    reader, writer, conn = await tcp_connect(rec, net, t, timeout)
    if reader is None or writer is None:
        return rec.observations
    methods = [wire.METHOD_NO_AUTH] + ([wire.METHOD_USERPASS] if user else [])
    step = rec.begin("proxy_connect", conn.id, proxy_type="socks5", address=t.address,
                     destination=f"{dhost}:{dport}", methods_offered=methods)
    fields: dict = {}
    try:
        writer.write(wire.build_greeting(methods))
        method = wire.parse_method_choice(await read_exact(reader, 2, timeout))
        fields["method"] = method
        if method == wire.METHOD_NONE_ACCEPTABLE:
            step.fail(protocol_failure("no acceptable authentication method"), **fields)
            return rec.observations
        if method == wire.METHOD_USERPASS and user:
            writer.write(wire.build_userpass(str(user), str(password)))
            status = wire.parse_userpass_reply(await read_exact(reader, 2, timeout))
            fields["auth_status"] = status
            if status != 0:
                step.fail(protocol_failure(f"authentication rejected (status {status})"), **fields)
                return rec.observations
        elif method != wire.METHOD_NO_AUTH:
            step.fail(protocol_failure(f"proxy chose method {method} we did not offer"), **fields)
            return rec.observations
        writer.write(wire.build_connect(dhost, dport))
        head = await read_exact(reader, 5, timeout)
        body = await read_exact(reader, wire.reply_length(head) - 5, timeout)
        reply = wire.parse_connect_reply(head + body)
        fields.update(reply=reply.reply, reply_text=reply.reply_text,
                      bound_address=f"{reply.bound_host}:{reply.bound_port}")
        if reply.reply == 0:
            step.ok(**fields)
        else:
            step.fail(f"unknown_failure: socks_reply: {reply.reply_text}", **fields)
    except wire.SocksWireError as exc:
        step.fail(protocol_failure(str(exc)), **fields)
    except Exception as exc:  # noqa: BLE001
        step.fail(exc, **fields)
    finally:
        await close_writer(writer)
    return rec.observations


target_from_url = url_targets(NAME)
