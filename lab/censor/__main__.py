"""``python -m censorscope.lab.censor --config FILE.json [--queue-num N]`` (run inside the censor namespace)."""

from __future__ import annotations

import argparse
import os
import sys

from .config import ConfigError
from .daemon import CensorDaemon


def in_initial_namespace(pid1_ns: str = "/proc/1/ns/net", own_ns: str = "/proc/self/ns/net") -> bool:
    """True when this process shares PID 1's network namespace (its rules would hit the real network)."""
    try:
        return os.stat(pid1_ns).st_ino == os.stat(own_ns).st_ino
    except OSError:
        return False  # cannot tell (no /proc access): the namespace setup is the caller's responsibility


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the censor until SIGTERM."""
    ap = argparse.ArgumentParser(prog="python -m censorscope.lab.censor", description=__doc__)
    ap.add_argument("--config", required=True, help="censor configuration (JSON); re-read on SIGHUP")
    ap.add_argument("--queue-num", type=int, default=0, help="NFQUEUE number (default 0)")
    args = ap.parse_args(argv)
    if in_initial_namespace():
        print("censor: refusing to run in the machine's own network namespace; "
              "start it with 'ip netns exec <censor namespace> ...'", file=sys.stderr)
        return 2
    try:
        return CensorDaemon(args.config, args.queue_num).run()
    except ConfigError as e:
        print(f"censor: invalid configuration: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
