"""``kuzet-edge``: run the agent, enrol the box, check the cameras."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

import structlog

from kuzet_edge import __version__
from kuzet_edge.config import ConfigError, load


def _logging(level: str, fmt: str) -> None:
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kuzet-edge", description="Kuzet edge agent")
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="json", choices=["json", "console"])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the agent")
    run.add_argument("--config", type=Path, required=True)
    enroll = commands.add_parser("enroll", help="exchange a one-time enrolment code for the box's key")
    enroll.add_argument("code")
    enroll.add_argument("--config", type=Path, required=True)
    enroll.add_argument("--api", help="the Kuzet API URL (default: the config's api_url)")
    doctor = commands.add_parser("doctor", help="check each camera and the uplink; print what to fix")
    doctor.add_argument("--config", type=Path, required=True)
    discover = commands.add_parser(
        "discover", help="find the ONVIF cameras on this network (WS-Discovery); print [[cameras]] tables"
    )
    discover.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for answers")
    discover.add_argument("--interface", help="the address of the network interface to probe from")
    args = parser.parse_args(argv)
    _logging(args.log_level, args.log_format)
    if args.command == "discover":
        from kuzet_edge.sources import discovery

        found = asyncio.run(discovery.discover(args.timeout, interface=args.interface))
        if not found:
            print(f"no ONVIF camera answered within {args.timeout:g} s", file=sys.stderr)  # noqa: T201
            return 1
        print(discovery.config_snippet(found))  # noqa: T201
        return 0
    try:
        config = load(args.config)
    except ConfigError as error:
        print(f"kuzet-edge: {error}", file=sys.stderr)  # noqa: T201
        return 2
    if args.command == "run":
        from kuzet_edge.agent import Agent

        try:
            agent = Agent(config)
        except (ConfigError, ValueError) as error:
            print(f"kuzet-edge: {error}", file=sys.stderr)  # noqa: T201
            return 2
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(agent.run())
        return 0
    if args.command == "enroll":
        from kuzet_edge.enroll import EnrolError
        from kuzet_edge.enroll import enroll as do_enroll

        try:
            keys = asyncio.run(do_enroll(config, args.code, args.api))
        except EnrolError as error:
            print(f"kuzet-edge: {error}", file=sys.stderr)  # noqa: T201
            return 1
        print(f"enrolled; {len(keys.camera_ids)} cameras registered")  # noqa: T201
        return 0
    from kuzet_edge.doctor import diagnose

    findings = asyncio.run(diagnose(config))
    for finding in findings:
        print(f"{'ok ' if finding.ok else 'FIX'}  {finding.subject}: {finding.text}")  # noqa: T201
    return 0 if all(f.ok for f in findings) else 1


if __name__ == "__main__":
    sys.exit(main())
