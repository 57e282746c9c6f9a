"""``python -m harness.toxiproxy [--host H] [--port P] [--seed N]``: the embedded server in the foreground.

Go-style single-dash options (``-host``, ``-port``) are accepted too, so a command line written for
``toxiproxy-server`` works unchanged.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness._errors import HarnessError
from harness.toxiproxy._runner import DEFAULT_PORT, serve


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.toxiproxy",
                                     description="Serve Toxiproxy's HTTP API (embedded implementation).")
    parser.add_argument("--host", "-host", default="127.0.0.1", help="address of the API (default 127.0.0.1)")
    parser.add_argument("--port", "-port", type=int, default=DEFAULT_PORT, help=f"API port (default {DEFAULT_PORT})")
    parser.add_argument("--seed", "-seed", type=int, default=None, help="seed toxicity rolls, jitter and slicing")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        serve(args.host, args.port, seed=args.seed)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
