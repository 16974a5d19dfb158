"""The bulk DNS engine against loopback servers: same records as the dns probe, every response kept."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import threading
import time

import dns.message
import pytest
from dns_servers import UDPServer, answer, closed_udp_port, no_data, rcode_of

from censorscope.measure import dns_bulk
from censorscope.measure.dns_bulk import resolve_many
from censorscope.probes import dns as dnsprobe
from censorscope.probes.errors import ConfigError
from censorscope.probes.net import Net, format_host_port
from censorscope.probes.wire import dnsbulk

pytestmark = pytest.mark.net

FORGED, REAL = "203.0.113.66", "198.51.100.7"


def inject_then_answer(query):
    return [(0.0, answer(query, FORGED, ttl=9), "injector"), (0.05, answer(query, REAL), "server")]


#: ``worker`` values of the tests: in this process (the Python engine), a worker process (the C engine when
#: built, which tests/unit/test_cext_built.py requires), a worker process on the pure-Python paths.
WORKERS = [False, True, "py"]


@contextlib.contextmanager
def engine(worker):
    """``resolve_many``'s ``worker`` argument for a ``WORKERS`` value; ``"py"`` also switches the C paths off
    (the worker's C loop and the C ``echo_record``) for the duration."""
    if worker != "py":
        yield worker
        return
    saved = os.environ.get("CENSORSCOPE_NO_CEXT"), dns_bulk.echo_record
    os.environ["CENSORSCOPE_NO_CEXT"] = "1"  # read by the forked worker
    dns_bulk.echo_record = dnsbulk.py_echo_record
    try:
        yield True
    finally:
        if saved[0] is None:
            del os.environ["CENSORSCOPE_NO_CEXT"]
        else:
            os.environ["CENSORSCOPE_NO_CEXT"] = saved[0]
        dns_bulk.echo_record = saved[1]


def bulk(names, resolver, **kw):
    results: dict[str, tuple[list[dict], float, float]] = {}

    def on_result(name, observations, start, runtime):
        assert name not in results
        results[name] = (observations, start, runtime)

    kw.setdefault("hold_window", 0.3)
    kw.setdefault("timeout", 2.0)
    with engine(kw.pop("worker", None)) as worker:
        stats = asyncio.run(resolve_many(names, resolver, on_result=on_result, worker=worker, **kw))
    return stats, results


def use_receiver(monkeypatch, receiver):
    """Force the portable recvmsg receiver, or check the recvmmsg one is what Linux gets."""
    if receiver == "recvmsg":
        monkeypatch.setattr(dns_bulk, "_make_receiver", dns_bulk._RecvMsg)
    else:
        assert isinstance(dns_bulk._make_receiver(socket.AF_INET), dns_bulk._RecvMMsg)


def children() -> set[int]:
    """Pids of this process's child processes (Linux /proc)."""
    out = set()
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[1] == me:
                out.add(int(entry))
    return out


@pytest.mark.parametrize(("sender", "receiver", "worker"), [
    ("sendmmsg", "recvmmsg", False), ("sendmmsg", "recvmmsg", True), ("sendmmsg", "recvmmsg", "py"),
    ("sendto", "recvmsg", False), ("sendto", "recvmsg", "py"), ("sendmmsg", "recvmsg", False),
    ("sendto", "recvmmsg", False)])
def test_double_answers_recorded_like_the_probe(monkeypatch, sender, receiver, worker):
    if sender == "sendto":
        monkeypatch.setattr(dns_bulk, "_make_sender", dns_bulk._SendTo)
    else:
        assert isinstance(dns_bulk._make_sender(2, ("127.0.0.1", 53)), dns_bulk._SendMMsg)
    use_receiver(monkeypatch, receiver)
    names = [f"site{i}.example" for i in range(40)]
    with UDPServer(inject_then_answer) as server:
        stats, results = bulk(names, server.address, concurrency=16, worker=worker)
        [probe_obs] = asyncio.run(dnsprobe.measure("site0.example", Net(), dnsprobe.Options(
            resolver=server.address, hold_window=0.3, timeout=2.0)))
    assert set(results) == set(names)
    assert (stats.names, stats.queries, stats.responses, stats.timeouts, stats.unmatched) == (40, 40, 80, 0, 0)
    probe = probe_obs.to_dict()
    for name, (observations, start, runtime) in results.items():
        [obs] = observations
        assert list(obs) == list(probe)  # same keys, same order
        assert obs["query_name"] == name and obs["failure"] is None and obs["addresses"] == [FORGED]
        first, second = obs["responses"]
        assert list(first) == list(probe["responses"][0])
        assert first["addresses"] == [FORGED] and second["addresses"] == [REAL]
        assert first["source"].endswith(f":{server.injector_port}") and second["source"].endswith(f":{server.port}")
        assert first["t"] <= second["t"] <= obs["t"] <= runtime + 1e-6  # equal when read in one batch (loaded host)
        assert obs["t"] - first["t"] >= 0.3 - 1e-3  # the window was held open after the first response
        assert start > 1e9  # wall-clock seconds


@pytest.mark.parametrize("worker", WORKERS)
def test_failures_match_the_probe_strings(worker):
    def behaviour(q):
        label = q.question[0].name.labels[0].decode()
        if label.startswith("nx"):
            return [(0, answer(q, rcode=rcode_of("NXDOMAIN")), "server")]
        if label.startswith("sf"):
            return [(0, answer(q, rcode=rcode_of("SERVFAIL")), "server")]
        if label.startswith("rf"):
            return [(0, answer(q, rcode=rcode_of("REFUSED")), "server")]
        if label.startswith("nodata"):
            return [(0, no_data(q), "server")]
        if label.startswith("silent"):
            return []
        return [(0, answer(q, REAL), "server")]

    expected = {"ok.example": None, "nx.example": "dns_nxdomain_error", "sf.example": "dns_servfail_error",
                "rf.example": "dns_refused_error", "nodata.example": "dns_no_answer",
                "silent.example": "generic_timeout_error"}
    with UDPServer(behaviour) as server:
        stats, results = bulk(list(expected), server.address, timeout=0.8, hold_window=0.1, worker=worker)
    got = {name: obs[0]["failure"] for name, (obs, _s, _r) in results.items()}
    assert got == expected
    assert stats.timeouts == 1 and results["silent.example"][0][0]["failed_step"] == "receive"


@pytest.mark.parametrize("worker", WORKERS)
def test_both_types_per_name(worker):
    def behaviour(q):
        return [(0, answer(q, REAL if q.question[0].rdtype == 1 else "2001:db8::7"), "server")]

    with UDPServer(behaviour) as server:
        stats, results = bulk(["a.example", "b.example"], server.address, qtypes=("A", "AAAA"), hold_window=0.05,
                              worker=worker)
    assert stats.queries == 4
    for observations, _s, _r in results.values():
        assert sorted(o["id"] for o in observations) == [1, 2]
        assert {o["query_type"]: o["addresses"] for o in observations} == {"A": [REAL], "AAAA": ["2001:db8::7"]}


@pytest.mark.parametrize("worker", WORKERS)
def test_wrong_id_is_attributed_by_question_and_strays_are_counted(worker):
    def behaviour(q):
        wrong_id = dns.message.from_wire(answer(q, FORGED))
        wrong_id.id = (q.id + 7) % 65536
        stray = dns.message.make_query("never-asked.example", "A")
        stray.id = (q.id + 9) % 65536
        return [(0, wrong_id.to_wire(), "injector"), (0.01, answer(stray, FORGED), "injector"),
                (0.03, answer(q, REAL), "server")]

    with UDPServer(behaviour) as server:
        stats, results = bulk(["X.Example"], server.address, hold_window=0.3, worker=worker)
    [obs] = results["X.Example"][0]
    assert [(r["id_mismatch"], r["addresses"]) for r in obs["responses"]] == [(True, [FORGED]), (False, [REAL])]
    assert obs["addresses"] == [REAL] and stats.unmatched == 1


def test_replies_after_the_window_are_not_attributed():
    def behaviour(q):
        return [(0, answer(q, REAL), "server"), (0.8, answer(q, FORGED), "injector")]

    with UDPServer(behaviour) as server:
        async def go():
            out = {}
            stats = await resolve_many(["late.example"], server.address, hold_window=0.1, timeout=2,
                                       on_result=lambda n, o, s, r: out.setdefault(n, o))
            return stats, out

        stats, out = asyncio.run(go())
    [obs] = out["late.example"]
    assert len(obs["responses"]) == 1 and obs["addresses"] == [REAL]


#: (receiver, worker): the in-process engine's two receivers, and both worker engines
RECEIVERS = [("recvmmsg", False), ("recvmsg", False), ("recvmmsg", True), ("recvmmsg", "py")]


@pytest.mark.parametrize(("receiver", "worker"), RECEIVERS)
def test_icmp_errors_are_attributed(monkeypatch, receiver, worker):
    use_receiver(monkeypatch, receiver)
    stats, results = bulk(["a.example", "b.example"], f"127.0.0.1:{closed_udp_port()}", hold_window=0.05,
                          worker=worker)
    assert stats.icmp_errors == 2
    for observations, _s, _r in results.values():
        [obs] = observations
        assert obs["failure"] == "connection_refused" and obs["icmp_errors"][0]["icmp_type"] == 3


@pytest.mark.parametrize("worker", WORKERS)
def test_invalid_names_are_skipped_and_reported(worker):
    with UDPServer(lambda q: [(0, answer(q, REAL), "server")]) as server:
        stats, results = bulk(["ok.example", "a..b", "bücher.example"], server.address, hold_window=0.05,
                              worker=worker)
    assert set(results) == {"ok.example", "xn--bcher-kva.example"} and stats.invalid_names == ["a..b"]


@pytest.mark.parametrize("worker", WORKERS)
def test_callback_errors_propagate_and_bad_arguments_raise(worker):
    def boom(*args):
        raise RuntimeError("disk full")

    before = children()
    with UDPServer(lambda q: [(0, answer(q, REAL), "server")]) as server:
        with pytest.raises(RuntimeError, match="disk full"), engine(worker) as worker:
            asyncio.run(resolve_many([f"{i}.example" for i in range(5000)], server.address, hold_window=0.05,
                                     on_result=boom, worker=worker))
    assert children() == before  # a worker process is killed and reaped
    for kwargs in ({"hold_window": -1}, {"concurrency": 0}, {"qtypes": ()}, {"qtypes": ("NOPE",)}):
        with pytest.raises(ConfigError):
            asyncio.run(resolve_many(["a.example"], "127.0.0.1:53", on_result=boom, **kwargs))
    with pytest.raises(ConfigError):
        asyncio.run(resolve_many(["a.example"], "https://dns.example/dns-query", on_result=boom))


@pytest.mark.parametrize("worker", WORKERS)
def test_many_names_low_concurrency_all_answered(worker):
    names = (f"n{i}.bulk.test" for i in range(2500))  # a generator, read lazily; several chunks for a worker
    before = children()
    with UDPServer(lambda q: [(0, answer(q, REAL), "server")]) as server:
        stats, results = bulk(names, server.address, concurrency=50, hold_window=0.02, timeout=10.0,  # generous:
                              worker=worker)  # a loaded CI machine
    names = [f"n{i}.bulk.test" for i in range(2500)]
    assert len(results) == 2500 and stats.responses == 2500 and stats.timeouts == 0 and stats.names == 2500
    assert children() == before
    ids = [results[n][0][0]["query_id"] for n in names[:600]]
    assert len(set(ids)) > 500  # ids come from a shuffled pool


@pytest.mark.parametrize(("receiver", "worker"), RECEIVERS)
def test_ipv6_resolver(monkeypatch, receiver, worker):
    use_receiver(monkeypatch, receiver)
    with UDPServer(inject_then_answer, host="::1") as server:
        stats, results = bulk(["v6.example"], server.address, hold_window=0.2, worker=worker)
    [obs] = results["v6.example"][0]
    assert obs["resolver"] == server.address and [r["addresses"] for r in obs["responses"]] == [[FORGED], [REAL]]
    assert obs["responses"][1]["source"] == f"[::1]:{server.port}" and obs["responses"][1]["ip_ttl"] == 64


@pytest.mark.parametrize("receiver", [dns_bulk._RecvMMsg, dns_bulk._RecvMsg])
@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_receivers_return_every_datagram_whole_with_sender_and_ttl(receiver, family, host):
    """Both receivers: every payload byte for byte (even 60 KB), in order, with its sender and IP TTL."""
    rx = socket.socket(family, socket.SOCK_DGRAM)
    tx = socket.socket(family, socket.SOCK_DGRAM)
    try:
        rx.bind((host, 0))
        rx.setblocking(False)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        dnsprobe.enable_recv_metadata(rx)
        tx.bind((host, 0))
        sizes = [12, 60_000] + [100 + i for i in range(dns_bulk._RECV_BATCH + 5)]  # more than one batch
        sent = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
        for payload in sent:
            tx.sendto(payload, rx.getsockname()[:2])
        got = []
        r = receiver(family)
        while batch := r.receive(rx):
            got += batch
        sender = format_host_port(host, tx.getsockname()[1])
        assert [d for d, _s, _t in got] == sent
        assert {(s, t) for _d, s, t in got} == {(sender, 64)}
        assert r.receive(rx) == []  # nothing left: empty, no exception
    finally:
        rx.close()
        tx.close()


@pytest.mark.parametrize("receiver", [dns_bulk._RecvMMsg, dns_bulk._RecvMsg])
def test_receivers_raise_a_pending_icmp_error(receiver):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        dnsprobe.enable_recv_metadata(sock)
        sock.sendto(b"\x00\x01hello", ("127.0.0.1", closed_udp_port()))
        r = receiver(socket.AF_INET)
        for _ in range(200):  # the ICMP error comes back asynchronously
            try:
                assert r.receive(sock) == []
            except ConnectionRefusedError:
                break
            time.sleep(0.01)
        else:
            pytest.fail("no ICMP error surfaced")
        [(original, info)] = dnsprobe.read_error_queue(sock)
        assert original == b"\x00\x01hello" and info["failure"] == "connection_refused"
    finally:
        sock.close()


def test_gc_runs_less_often_during_a_run_and_is_restored():
    import gc

    before = gc.get_threshold()
    seen = []
    with UDPServer(lambda q: [(0, answer(q, REAL), "server")]) as server:
        bulk(["a.example"], server.address, hold_window=0.05)  # a whole run before the nested ones

        async def nested():  # two engines at once share one save/restore
            out = []
            await asyncio.gather(*(resolve_many([f"{i}.example"], server.address, hold_window=0.05,
                                                on_result=lambda *a: (out.append(a), seen.append(gc.get_threshold())))
                                   for i in range(2)))
            return out

        assert len(asyncio.run(nested())) == 2
    assert gc.get_threshold() == before
    assert seen and all(t[0] == max(before[0], dns_bulk.GC_THRESHOLD0) for t in seen)


def test_a_failing_or_dying_worker_is_an_error_and_leaves_no_process(monkeypatch):
    from censorscope.measure import dns_bulk_worker

    before = children()
    with UDPServer(lambda q: [(0, answer(q, REAL), "server")]) as server:
        def broken(self):
            raise ValueError("engine bug")

        with monkeypatch.context() as m:
            m.setattr(dns_bulk._Engine, "_fill", broken)  # the Python engine
            with pytest.raises(RuntimeError, match="(?s)worker failed.*engine bug"):
                bulk(["a.example"], server.address, hold_window=0.05, worker="py")
        if dns_bulk_worker.engine_kind() == "C":  # (not under CENSORSCOPE_NO_CEXT=1)
            with monkeypatch.context() as m:
                m.setattr(dns_bulk_worker._Host, "new_socket", broken)  # a callback of the C engine
                with pytest.raises(RuntimeError, match="(?s)worker failed.*engine bug"):
                    bulk(["a.example"], server.address, hold_window=0.05, worker=True)
        for worker in (True, "py"):
            with monkeypatch.context() as m:
                m.setattr(dns_bulk_worker, "_worker_main", lambda *a: os._exit(3))
                m.setattr(dns_bulk_worker, "_c_worker_main", lambda *a: os._exit(3))
                with pytest.raises(RuntimeError, match="exited unexpectedly"):
                    bulk(["a.example"], server.address, hold_window=0.05, worker=worker)
        stats, results = bulk(["a.example"], server.address, hold_window=0.05, worker=True)  # and all is well again
    assert list(results) == ["a.example"] and children() == before


def test_the_worker_keeps_no_inherited_file_open(tmp_path):
    """The run's output file (and its lock) is closed in the worker: only the parent holds it."""
    path = tmp_path / "out.jsonl"
    seen = []
    def behaviour(q):  # the second name's answer comes late: the worker is still alive for the first result
        return [(0.6 if str(q.question[0].name).startswith("late") else 0, answer(q, REAL), "server")]

    with open(path, "wb") as out, UDPServer(behaviour) as server:
        target = os.readlink(f"/proc/self/fd/{out.fileno()}")

        def on_result(name, observations, start, runtime):
            for pid in children():
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    with contextlib.suppress(OSError):
                        seen.append(os.readlink(f"/proc/{pid}/fd/{fd}"))

        asyncio.run(resolve_many(["a.example", "late.example"], server.address, hold_window=0.05,
                                 on_result=on_result, worker=True))
    assert seen and target not in seen


def test_no_worker_fork_while_other_threads_run():
    """A fork while another thread holds a lock can hang the child: with a second thread alive the
    engine stays in this process (and uses the worker again once it is alone)."""
    import threading

    from censorscope.measure import dns_bulk

    if not (hasattr(os, "fork") and (os.cpu_count() or 1) >= 2):
        pytest.skip("one CPU: the engine never forks here")
    alone = threading.active_count() == 1
    release = threading.Event()
    t = threading.Thread(target=release.wait, daemon=True)
    t.start()
    try:
        assert dns_bulk._use_worker() is False
    finally:
        release.set()
        t.join()
    assert dns_bulk._use_worker() is alone


def _mixed_behaviour(q):
    """Every reply shape at once: usual, injected + real, wrong id, a stray, rcodes, no data, CNAME chain
    (the general decoder), several answers, AAAA, truncated, garbage, silence."""
    label = q.question[0].name.labels[0].decode().lower()
    qtype = q.question[0].rdtype
    if label.startswith("dbl"):
        return inject_then_answer(q)
    if label.startswith("wid"):
        wrong = dns.message.from_wire(answer(q, FORGED))
        wrong.id = (q.id + 7) % 65536
        stray = dns.message.make_query("never-asked.example", "A")
        return [(0, wrong.to_wire(), "injector"), (0, answer(stray, FORGED), "injector"),
                (0.02, answer(q, REAL), "server")]
    if label.startswith("nx"):
        return [(0, answer(q, rcode=rcode_of("NXDOMAIN")), "server")]
    if label.startswith("sf"):
        return [(0, answer(q, rcode=rcode_of("SERVFAIL")), "server")]
    if label.startswith("nodata"):
        return [(0, no_data(q), "server")]
    if label.startswith("cname"):
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "CNAME", "edge.cdn.test."))
        r.answer.append(dns.rrset.from_text("edge.cdn.test.", 20, "IN", "A" if qtype == 1 else "AAAA",
                                            REAL if qtype == 1 else "2001:db8::7"))
        return [(0, r.to_wire(), "server")]
    if label.startswith("many"):
        ips = ("198.51.100.1", "198.51.100.2", "203.0.113.3") if qtype == 1 else ("2001:db8::1", "2001:db8::2")
        return [(0, answer(q, *ips), "server")]
    if label.startswith("cut"):
        return [(0, answer(q, REAL)[:-7], "server")]
    if label.startswith("junk"):
        return [(0, b"\x00\x01garbage", "injector"), (0, answer(q, REAL), "server")]
    if label.startswith("silent"):
        return []
    return [(0, answer(q, REAL if qtype == 1 else "2001:db8::7"), "server")]


def _relative_id(data: bytes, qid: int) -> tuple[int, bytes]:
    return (int.from_bytes(data[:2], "big") - qid) % 65536, data[2:]


def _comparable(results):
    """The records without what differs from run to run by design: times and the random query ids
    (each response's id is kept relative to its query's)."""
    out = {}
    for name, (observations, _start, _runtime) in results.items():
        rows = []
        for o in observations:
            row = {k: v for k, v in o.items() if k not in ("t0", "t", "id", "query_id", "responses")}
            row["responses"] = [
                {**{k: v for k, v in r.items() if k not in ("t", "query_id", "raw_b64")},
                 "query_id": None if r["query_id"] is None else (r["query_id"] - o["query_id"]) % 65536,
                 "raw": None if r["raw_b64"] is None else _relative_id(base64.b64decode(r["raw_b64"]), o["query_id"])}
                for r in o["responses"]]
            rows.append(row)
        out[name] = sorted(rows, key=lambda row: row["query_type"])  # ids follow completion order
    return out


def test_every_engine_records_the_same():
    """The in-process Python engine, the worker's C engine (with the C decoder) and the worker's Python
    engine (pure Python) store identical records for the same replies, whatever their shape."""
    names = [f"{kind}{i}.Mixed.example" for kind in ("ok", "dbl", "wid", "nx", "sf", "nodata", "cname", "many",
                                                     "cut", "junk", "silent") for i in range(3)]
    runs = {}
    with UDPServer(_mixed_behaviour) as server:
        for worker in WORKERS:
            stats, results = bulk(names, server.address, qtypes=("A", "AAAA"), hold_window=0.3, timeout=1.0,
                                  concurrency=7, worker=worker)
            counts = (stats.names, stats.queries, stats.responses, stats.timeouts, stats.unmatched,
                      stats.icmp_errors, stats.send_errors)
            runs[worker] = (counts, _comparable(results))
    assert runs[False][0] == (33, 66, 72, 6, 12, 0, 0)
    assert runs[True] == runs[False] and runs["py"] == runs[False]
    records = runs[True][1]
    assert [r["id_mismatch"] for r in records["wid0.Mixed.example"][0]["responses"]] == [True, False]
    assert records["cname0.Mixed.example"][0]["responses"][0]["answers"][0]["type"] == "CNAME"
    assert records["cut0.Mixed.example"][0]["failure"] == "dns_server_misbehaving"


class _EchoFrom:
    """A fast loopback 'server' for volume: it reads every query (a 64 MiB receive buffer) and sends back
    (QR set: NOERROR, no answer) those for names ``v<N>...`` with N >= ``first``; the others get nothing."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE (root, as the suite runs)
        self.sock.settimeout(0.1)
        self.address = format_host_port(*self.sock.getsockname())
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            if int(data[14:13 + data[12]]) >= self.first:
                self.sock.sendto(data[:2] + bytes([data[2] | 0x80]) + data[3:], addr)

    def __enter__(self) -> _EchoFrom:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop = True
        self.thread.join(5)
        self.sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("worker", WORKERS[1:])
def test_more_queries_in_flight_than_one_socket_has_ids(worker):
    """70,000 queries in flight at once: the first socket's 65,536 ids run out and a second socket takes
    the rest; replies on the second socket are received and attributed, the others time out."""
    names = [f"v{i}.volume.test" for i in range(70_000)]
    with _EchoFrom(65_536) as server:
        stats, results = bulk(names, server.address, hold_window=0.2, timeout=4.0, concurrency=70_000,
                              worker=worker)
    assert stats.sockets == 2 and stats.names == stats.queries == len(results) == 70_000
    assert (stats.responses, stats.timeouts, stats.unmatched) == (70_000 - 65_536, 65_536, 0)
    failures = {name: obs[0]["failure"] for name, (obs, _s, _r) in results.items()}
    assert {failures[f"v{i}.volume.test"] for i in range(65_536)} == {"generic_timeout_error"}
    assert {failures[f"v{i}.volume.test"] for i in range(65_536, 70_000)} == {"dns_no_answer"}
