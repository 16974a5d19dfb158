"""Run the control helper in-process on 127.0.0.1 (random port) for tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn

from censorscope.measure.cli_helper import _bind
from censorscope.measure.helper import HelperConfig, create_app


class HelperThread:
    """The helper app under uvicorn in a background thread; ``url`` once started."""

    def __init__(self, config: HelperConfig) -> None:
        self.config = config
        self.sock = _bind("127.0.0.1:0")  # the listener `censorscope helper serve` makes
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        uv = uvicorn.Config(create_app(config), log_config=None, log_level="warning", access_log=False,
                            lifespan="off", proxy_headers=False)
        self.server = uvicorn.Server(uv)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
                                       daemon=True)

    def __enter__(self) -> HelperThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("helper did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


class LoopbackListener:
    """A TCP listener on 127.0.0.1 that accepts and counts connections (thread).

    With ``echo``, each connection's first payload is sent back before it is closed.
    """

    def __init__(self, echo: bool = False) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.echo = echo
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                if self.echo:
                    conn.settimeout(5)
                    try:
                        conn.sendall(conn.recv(65536))
                    except OSError:
                        pass

    def __enter__(self) -> LoopbackListener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)
