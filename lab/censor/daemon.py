"""The censor process: bind the NFQUEUE, install rules, run behaviours, reload on SIGHUP.

Lifecycle (the contract the lab relies on; see docs/censor.md):

1. bind queue ``N`` (before any rule points at it: without ``--queue-bypass`` an
   unbound queue drops packets);
2. build the behaviours, install the rules, start side effects (tc, proxy);
3. write ``<config>.ready`` (JSON: pid, queue, generation, behaviours);
4. loop: ``select`` on the queue socket and a signal wake-up pipe; give
   verdicts; release held (delayed) packets when due;
5. SIGHUP: re-read the config; on success stop behaviours, reinstall rules,
   start the new ones and rewrite the ready file with generation + 1; on error
   keep running the old configuration and log ``reload_failed``;
6. SIGTERM/SIGINT: remove rules, release held packets, stop behaviours, unbind,
   delete the ready file, exit 0.

A behaviour that raises on a packet is logged (``error``) and the packet
accepted: a broken censor must show up in the log, not as censorship.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import random
import select
import signal
import socket
import subprocess
import time
import traceback
from pathlib import Path

from netfilterqueue import NetfilterQueue

from . import rules as iptables
from .actionlog import ActionLog
from .config import CensorConfig, ConfigError, load_config_file
from .engine import Engine, build_behaviours
from .inject import RawInjector

QUEUE_MAXLEN = 4096


class CensorDaemon:
    """One censor bound to one queue in the current network namespace."""

    def __init__(self, config_path: str | Path, queue_num: int = 0) -> None:
        self.config_path = Path(config_path)
        self.ready_path = Path(str(self.config_path) + ".ready")
        self.queue_num = queue_num
        self.generation = 0
        self.injector = RawInjector()
        self.held: list[tuple[float, int, object]] = []  # (due, tiebreak, packet)
        self._tiebreak = itertools.count()
        self._signals: list[int] = []
        self.config: CensorConfig | None = None
        self.log = ActionLog(None)
        self.engine = Engine([])

    # -- configuration -----------------------------------------------------------------

    def _state_dir(self, config: CensorConfig) -> Path:
        return Path(config.state_dir) if config.state_dir else Path(str(self.config_path) + ".state")

    def _apply(self, config: CensorConfig) -> None:
        """Tear down the running behaviours (if any) and bring up ``config``'s."""
        for b in self.engine.behaviours:
            b.stop()
        if config.log != (self.config.log if self.config else None):
            self.log.close()
            self.log = ActionLog(config.log)
        state_dir = self._state_dir(config)
        state_dir.mkdir(parents=True, exist_ok=True)
        behaviours = build_behaviours(config, state_dir=state_dir, log=self.log.event,
                                      rng=random.Random(config.seed))
        queue_rules = [r for b in behaviours for r in b.queue_rules()]
        kernel_rules = [r for b in behaviours for r in b.kernel_rules()]
        iptables.install(iptables.ruleset(queue_rules, kernel_rules, self.queue_num))
        self.engine = Engine(behaviours)
        for b in behaviours:
            b.start()
        self.config = config
        self.generation += 1
        self._write_ready()

    def _write_ready(self) -> None:
        assert self.config is not None
        info = {
            "pid": os.getpid(),
            "queue": self.queue_num,
            "generation": self.generation,
            "behaviours": [b.name for b in self.config.behaviours],
        }
        tmp = self.ready_path.with_name(self.ready_path.name + ".tmp")
        tmp.write_text(json.dumps(info) + "\n")
        os.replace(tmp, self.ready_path)  # readers never see a half-written file

    def _reload(self) -> None:
        try:
            config = load_config_file(self.config_path)
        except (ConfigError, OSError) as e:
            self.log.event("censor", {}, "reload_failed", {"error": str(e), "generation": self.generation})
            return
        previous = self.config
        try:
            self._apply(config)
        except (subprocess.CalledProcessError, OSError, ValueError) as e:
            # e.g. a rule or tc command the kernel refused: go back to what ran before
            detail = e.stderr if isinstance(e, subprocess.CalledProcessError) else ""
            self.log.event("censor", {}, "reload_failed", {"error": f"{e} {detail or ''}".strip(),
                                                           "generation": self.generation})
            if previous is not None:
                self.generation -= 1  # _apply counts the restore as a new generation
                self._apply(previous)
            return
        self.log.event("censor", {}, "reloaded", {"generation": self.generation})

    # -- packets -----------------------------------------------------------------------

    def _on_packet(self, pkt: object) -> None:
        try:
            raw = pkt.get_payload()  # type: ignore[attr-defined]
            d = self.engine.decide(raw, time.monotonic())
        except Exception as e:  # noqa: BLE001 - a censor bug must not look like censorship
            self.log.event("censor", {}, "error", {"error": repr(e), "traceback": traceback.format_exc(limit=5)})
            pkt.accept()  # type: ignore[attr-defined]
            return
        for rec in d.logs:  # logged first: whoever sees the effect can already read its cause
            self.log.write(rec)
        for inj in d.injects:  # injections leave before the verdict (forged answers race the real one)
            err = self.injector.send(inj.raw, inj.dst)
            if err:
                self.log.event("censor", {"dst": inj.dst}, "inject_failed", {"what": inj.what, "error": err})
        if d.drop:
            pkt.drop()  # type: ignore[attr-defined]
            return
        if d.mark:
            pkt.set_mark(pkt.get_mark() | d.mark)  # type: ignore[attr-defined]
        if d.delay > 0:
            pkt.retain()  # type: ignore[attr-defined]
            heapq.heappush(self.held, (time.monotonic() + d.delay, next(self._tiebreak), pkt))
            return
        pkt.accept()  # type: ignore[attr-defined]

    def _release(self, everything: bool = False) -> None:
        now = time.monotonic()
        while self.held and (everything or self.held[0][0] <= now):
            _, _, pkt = heapq.heappop(self.held)
            try:
                pkt.accept()  # type: ignore[attr-defined]
            except RuntimeError:
                pass  # queue already unbound

    # -- main loop ---------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit status."""
        config = load_config_file(self.config_path)  # invalid config: fail before touching the kernel
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        old_fd = signal.set_wakeup_fd(wake_w.fileno())
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda s, _f: self._signals.append(s))
        nfq = NetfilterQueue()
        nfq.bind(self.queue_num, self._on_packet, max_len=QUEUE_MAXLEN)
        qsock = socket.socket(fileno=os.dup(nfq.get_fd()))
        try:
            self._apply(config)
            self.log.event("censor", {}, "ready", {"generation": self.generation, "queue": self.queue_num,
                                                   "pid": os.getpid()})
            while True:
                timeout = max(0.0, self.held[0][0] - time.monotonic()) if self.held else 1.0
                ready, _, _ = select.select([qsock, wake_r], [], [], timeout)
                if qsock in ready:
                    nfq.run(block=False)
                self._release()
                if wake_r in ready:
                    try:
                        while wake_r.recv(64):
                            pass
                    except BlockingIOError:
                        pass
                stop = False
                while self._signals:
                    sig = self._signals.pop(0)
                    if sig == signal.SIGHUP:
                        self._reload()
                    else:
                        stop = True
                if stop:
                    return 0
        finally:
            iptables.remove()
            self._release(everything=True)
            for b in self.engine.behaviours:
                b.stop()
            nfq.unbind()
            qsock.close()
            self.injector.close()
            signal.set_wakeup_fd(old_fd)
            self.ready_path.unlink(missing_ok=True)
            self.log.event("censor", {}, "stopped", {"generation": self.generation})
            self.log.close()
