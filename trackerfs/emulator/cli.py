"""Command line of the emulator (``python -m trackerfs.emulator``, ``trackerfs emulate``)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

import trio

from trackerfs.emulator.dialects import DIALECTS
from trackerfs.emulator.faults import parse_plan
from trackerfs.emulator.options import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_UPLOAD_LIMIT,
    DEFAULT_USERS,
    TOKEN_ENV,
    EmulatorOptions,
    resolve_token,
)
from trackerfs.emulator.seed import SEEDS
from trackerfs.emulator.server import EmulatorStartError, error_in, serve_emulator

#: Exit status for options the emulator cannot start with (as for any usage error).
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser``."""
    parser.add_argument("--tracker", choices=sorted(DIALECTS), default="jira")
    # Every dialect's flavours; which belong to the chosen tracker is checked after parsing.
    flavours = sorted({f for dialect in DIALECTS.values() for f in dialect.flavours})
    parser.add_argument(
        "--flavour",
        choices=flavours,
        help="which of the vendor's products to be (default: the dialect's first, which serves all)",
    )
    parser.add_argument(
        "--org-id",
        metavar="ID",
        help="Yandex Tracker: the organisation X-Org-ID or X-Cloud-Org-ID must name (default: 12345)",
    )
    parser.add_argument(
        "--user",
        action="append",
        dest="users",
        metavar="NAME",
        help=f"a user name Basic auth accepts (repeatable; default: {', '.join(DEFAULT_USERS)});"
        " the first owns the token",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="API port (0: any free port)")
    parser.add_argument("--media-port", type=int, default=0, help="media origin port")
    parser.add_argument("--seed", choices=sorted(SEEDS), default="demo")
    parser.add_argument(
        "--token",
        help=f"API token (default: ${TOKEN_ENV}, else a random one); prefer the variable",
    )
    parser.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE)
    parser.add_argument("--upload-limit", type=int, default=DEFAULT_UPLOAD_LIMIT, metavar="BYTES")
    parser.add_argument(
        "--data-dir", type=Path, help="keep blobs in DIR/blobs (default: a temporary directory)"
    )
    parser.add_argument(
        "--faults",
        type=Path,
        metavar="FILE",
        help="a fault plan in force from the start: a JSON list of rules as POST /_emulator/faults takes",
    )
    parser.add_argument(
        "--media-base",
        metavar="URL",
        help="send content redirects to URL/BLOB_NAME (e.g. nginx serving DATA_DIR/blobs)",
    )


def options_from_args(args: argparse.Namespace) -> EmulatorOptions:
    """EmulatorOptions from parsed arguments; EmulatorStartError for a flavour the tracker lacks."""
    known = DIALECTS[args.tracker].flavours
    if args.flavour is not None and args.flavour not in known:
        raise EmulatorStartError(
            f"--tracker {args.tracker} has no flavour {args.flavour!r} (it has: {', '.join(known)})"
        )
    return EmulatorOptions(
        tracker=args.tracker,
        flavour=args.flavour,
        org_id=args.org_id,
        users=tuple(args.users) if args.users else DEFAULT_USERS,
        host=args.host,
        port=args.port,
        media_port=args.media_port,
        seed=args.seed,
        token=resolve_token(args.token),
        page_size=args.page_size,
        upload_limit=args.upload_limit,
        data_dir=args.data_dir,
        media_base=args.media_base,
        faults=read_plan(args.faults),
    )


def read_plan(path: Path | None) -> tuple[Any, ...]:
    """The rules of a `--faults` file, checked; EmulatorStartError for one that is not a plan."""
    if path is None:
        return ()
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
        parse_plan(plan)
    except (OSError, ValueError) as exc:
        raise EmulatorStartError(f"--faults {path}: {exc}") from None
    return tuple(plan)


async def _run(options: EmulatorOptions) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            info = await nursery.start(serve_emulator, options)
            # Tests parse these first three lines; keep their order and format.
            print(f"url: {info.base_url}", flush=True)
            print(f"media: {info.media_url}", flush=True)
            print(f"token: {info.token}", flush=True)
            print(
                f"tracker: {options.tracker} ({info.state.flavour})  seed: {options.seed}"
                f"  data: {info.data_dir}",
                flush=True,
            )
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def run_from_args(args: argparse.Namespace) -> int:
    """Run the emulator until SIGINT or SIGTERM; returns the exit status.

    A reason not to start (a busy port, an unusable data directory) is one line on stderr.
    """
    try:
        trio.run(_run, options_from_args(args))
    except BaseException as exc:
        failure = error_in(exc, EmulatorStartError)
        if failure is None:
            raise
        print(f"trackerfs: {failure}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m trackerfs.emulator``."""
    parser = argparse.ArgumentParser(
        prog="python -m trackerfs.emulator", description="Built-in issue-tracker emulator."
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(sys.argv[1:] if argv is None else argv))
