"""``python -m graph_emulator --port 0``: run the emulator until killed.

Prints exactly one line, ``graph-emulator listening on http://127.0.0.1:PORT``; the ids and the
identity header are at ``GET /_emulator/info``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .server import GraphEmulator
from .state import FaultError, parse_rate_limit


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m graph_emulator", description="Loopback Microsoft Graph emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--sp-id", help="service principal object id (default: a new GUID)")
    parser.add_argument("--job-id", help="job id (default: API2AAD.<32 hex>.<guid>)")
    parser.add_argument(
        "--rate-limit",
        default="40/5",
        help="REQUESTS/SECONDS for the tenant (all jobs), or 'none' (default 40/5)",
    )
    parser.add_argument(
        "--log-rate-limit",
        default="5/10",
        help="provisioning-log reads REQUESTS/SECONDS per app, or 'none' (default 5/10, "
        "Graph's identity and access reports limit)",
    )
    parser.add_argument(
        "--no-retry-after",
        action="store_true",
        help="answer bulkUpload 429s without a Retry-After header",
    )
    parser.add_argument(
        "--daily-quota", type=int, help="bulkUpload calls per 24 h for the tenant (all jobs)"
    )
    parser.add_argument(
        "--log-delay", type=float, default=0.0, help="seconds before log entries are visible"
    )
    parser.add_argument("--identity-header", help="the X-IDENTITY-HEADER secret (default random)")
    parser.add_argument("--token-lifetime", type=float, default=86400.0, help="token seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        rate_limit = parse_rate_limit(args.rate_limit)
        log_rate_limit = parse_rate_limit(args.log_rate_limit, "--log-rate-limit")
    except FaultError as exc:
        print(f"graph-emulator: {exc}", file=sys.stderr)
        return 2
    try:
        emulator = GraphEmulator(
            args.host,
            args.port,
            sp_id=args.sp_id,
            job_id=args.job_id,
            rate_limit=rate_limit,
            log_rate_limit=log_rate_limit,
            retry_after=not args.no_retry_after,
            log_delay=args.log_delay,
            daily_quota=args.daily_quota,
            token_lifetime=args.token_lifetime,
            identity_header=args.identity_header,
        )
    except (OSError, ValueError) as exc:
        print(f"graph-emulator: {exc}", file=sys.stderr)
        return 2

    def _stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever returns, so call it from another thread.
        threading.Thread(target=emulator._server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"graph-emulator listening on {emulator.url}", flush=True)
    try:
        emulator.serve_forever()
    finally:
        emulator._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
