"""``python -m censorscope.lab.censor --config FILE.json [--queue-num N]`` (run inside the censor namespace)."""

from __future__ import annotations

import argparse
import sys

from .config import ConfigError
from .daemon import CensorDaemon


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the censor until SIGTERM."""
    ap = argparse.ArgumentParser(prog="python -m censorscope.lab.censor", description=__doc__)
    ap.add_argument("--config", required=True, help="censor configuration (JSON); re-read on SIGHUP")
    ap.add_argument("--queue-num", type=int, default=0, help="NFQUEUE number (default 0)")
    args = ap.parse_args(argv)
    try:
        return CensorDaemon(args.config, args.queue_num).run()
    except ConfigError as e:
        print(f"censor: invalid configuration: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
