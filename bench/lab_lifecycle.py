"""Benchmark: lab up / down / scenario switch, and N labs in parallel (needs root).

Usage: sudo python bench/lab_lifecycle.py [--rounds 3] [--parallel 4,8]

Times, in the same run:

- a full lab build with the ``baseline`` scenario (no censor) and with
  ``dns-injection`` (censor started), and their teardown;
- switching one running lab between different scenarios, and re-applying the
  same one (a censor reload);
- N labs brought up at once (threads), each then checked on the wire (the forged
  DNS answer arrives first and the real one after it; the HTTPS site loads).

Prints medians and two ratios against the reference beside them: switch time
over a full rebuild (up + down: the goal is well below 1, which is why the test
fixtures switch instead of rebuilding), and N labs in parallel over N times one
lab (below 1 when builds overlap).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "lab"))

import labclients as C  # noqa: E402

from censorscope.lab import addressing as A  # noqa: E402
from censorscope.lab import scenario as S  # noqa: E402
from censorscope.lab.lab import Lab  # noqa: E402

SWITCHES = ["dns-injection", "sni-rst", "ip-blackhole", "baseline", "resolver-lying", "http-keyword-rst", "cdn"]


def _med(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def _timed(fn) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def _check(lab: Lab) -> bool:
    got = lab.topo.call_in("client", C.dns_responses, A.RESOLVER_V4, "blocked.example.com")
    site = lab.scenario.site("www.example.com")
    web = lab.topo.call_in("client", C.https_get, site.addresses[0], site.name, str(lab.ca_file))
    return len(got) >= 2 and got[0][1][0] in A.FORGED_POOL_V4 and web[:2] == ("ok", 200)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parallel", default="4,8", help="comma-separated lab counts")
    a = ap.parse_args()
    tag = f"b{__import__('os').getpid() % 10000}"
    ups, ups_censor, downs = [], [], []
    for i in range(a.rounds):
        for scen, bucket in (("baseline", ups), ("dns-injection", ups_censor)):
            lab = Lab(f"{tag}r{i}")
            bucket.append(_timed(lambda lab=lab, scen=scen: lab.up(S.load(scen))))
            downs.append(_timed(lab.down))
    lab = Lab(f"{tag}s")
    lab.up(S.load("baseline"))
    try:
        switches = [_timed(lambda n=n: lab.switch(S.load(n))) for n in SWITCHES * a.rounds]
        same = [_timed(lambda: lab.switch(lab.scenario)) for _ in range(a.rounds * 2)]
    finally:
        lab.down()
    rebuild = statistics.median(ups_censor) + statistics.median(downs)
    print(f"up, baseline (no censor):       {_med(ups)}")
    print(f"up, dns-injection (censor):     {_med(ups_censor)}")
    print(f"down:                           {_med(downs)}")
    print(f"switch, different scenarios:    {_med(switches)}")
    print(f"re-apply (censor reload):       {_med(same)}")
    print(f"ratio switch / rebuild (up+down with censor): {statistics.median(switches) / rebuild:.2f}")
    single = statistics.median(ups_censor)
    for n in (int(x) for x in a.parallel.split(",") if x):
        labs = [Lab(f"{tag}p{n}x{i}") for i in range(n)]
        errors: list[BaseException] = []

        def up(lab: Lab, errors: list[BaseException] = errors) -> None:
            try:
                lab.up(S.load("dns-injection"))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=up, args=(lab_,)) for lab_ in labs]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = time.monotonic() - t0
        try:
            ok = not errors and all(_check(lab_) for lab_ in labs)
        finally:
            for lab_ in labs:
                lab_.down()
        print(f"{n} labs in parallel: {total:.2f} s, all correct: {ok}, errors: {errors or 'none'}; "
              f"ratio vs {n} x one lab: {total / (n * single):.2f}")


if __name__ == "__main__":
    main()
