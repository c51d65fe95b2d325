"""Deployment files, checked without a container engine or a network: the Dockerfile by hadolint,
compose against the compose specification's schema, the Kubernetes manifests (Kustomize base and the
production overlay, rendered here) against Kubernetes' and KEDA's schemas (vendored in tests/schemas),
the autoscaler's SQL against the metrics' own, and the alerting rules and dashboard against the
metrics the code exports. Beside the schemas, each file is checked against the code it runs."""

from __future__ import annotations

import copy
import json
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml
from litestar import Litestar
from litestar.plugins.prometheus import PrometheusMiddleware
from litestar.testing import AsyncTestClient
from prometheus_client.metrics import MetricWrapperBase

from backend.core import jobs, metrics, queue
from backend.core.config import Settings, load_settings
from kuzet.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
SCHEMAS = Path(__file__).parent / "schemas"
HADOLINT = Path(sys.executable).parent / "hadolint"
KUBERNETES_VERSION = "1.31.0"  # the oldest minor still commonly run by managed Kubernetes
KEDA_SCHEMAS = {
    "ScaledObject": SCHEMAS / "scaledobject-keda-v1alpha1.json",
    "TriggerAuthentication": SCHEMAS / "triggerauthentication-keda-v1alpha1.json",
}
Client = AsyncTestClient[Litestar]


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# --- Dockerfile -----------------------------------------------------------------------------------


def hadolint(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "-f", "json", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    assert (result.returncode == 0) == (not findings), result.stderr
    return findings


def test_the_dockerfile_passes_hadolint_which_does_catch_mistakes(tmp_path: Path) -> None:
    assert hadolint(INFRA / "Dockerfile") == []
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nRUN cd /app\n")
    assert {"DL3007", "DL3008", "DL3009", "DL3015", "DL3003"} <= {f["code"] for f in hadolint(bad)}


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(instruction, arguments) per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (INFRA / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, args = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def test_one_slim_non_root_image_runs_kuzet_with_the_model_and_no_build_tools() -> None:
    builder, final = dockerfile_stages()
    base = dict(final)["FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    assert dict(builder)["FROM"].startswith(base + " AS ")  # same Python: the venv's interpreter path holds
    syncs = [args for op, args in builder if op == "RUN" and "uv sync" in args]
    assert syncs
    assert all("--locked" in s and "--no-default-groups" in s for s in syncs)  # no dev, no train group
    final_ops = dict(final)
    assert final_ops["USER"] == "10001:10001"
    assert json.loads(final_ops["ENTRYPOINT"]) == ["kuzet"]
    command = json.loads(final_ops["CMD"])
    build_parser().parse_args(command)  # a real command
    final_text = " ".join(args for _, args in final)
    for tool in ("gcc", "build-essential", "apt-get install", "pip install", "uv "):
        assert tool not in final_text, tool
    assert any(op == "COPY" and args == "--from=builder /app /app" for op, args in final)
    # The healthcheck asks the API's own liveness route on the port the API listens on.
    [url] = re.findall(r"http://127\.0\.0\.1:(\d+)(/\w+)", final_ops["HEALTHCHECK"])
    assert url == (command[command.index("--port") + 1], "/healthz")
    copied = {args.split()[-1].removeprefix("./") for op, args in builder if op == "COPY"}
    assert {"backend", "mobile_api", "workers", "kuzet", "migrations"} <= copied
    assert "training" not in copied  # fitting, validation and export stay in the development checkout


def test_the_build_context_keeps_the_committed_model_and_migrations() -> None:
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :]  # an allow-list: everything else stays out
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert {"backend", "mobile_api", "workers", "kuzet", "migrations", "pyproject.toml", "uv.lock"} <= kept
    assert "training" not in kept
    tracked = subprocess.run(
        ["git", "ls-files", "workers/vision/assets"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    sidecar = json.loads((ROOT / "workers/vision/assets/kuzet-fight.json").read_text())
    onnx = {Path(v).name for v in _strings(sidecar) if v.endswith(".onnx")}
    assert onnx, "the model names its ONNX files"
    for name in onnx:  # baked in: committed, and not dropped by the ignore file
        assert f"workers/vision/assets/{name}" in tracked
        assert not name.endswith(".fp32.onnx")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


# --- compose --------------------------------------------------------------------------------------


def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def test_compose_follows_the_compose_specification() -> None:
    validator = compose_validator()
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    assert list(validator.iter_errors(compose)) == []
    wrong_condition = copy.deepcopy(compose)
    wrong_condition["services"]["api"]["depends_on"]["migrate"]["condition"] = "finished"
    assert list(validator.iter_errors(wrong_condition))
    unknown_key = copy.deepcopy(compose)
    unknown_key["services"]["worker"]["restart_policy"] = "always"
    assert any("restart_policy" in e.message for e in validator.iter_errors(unknown_key))


def test_compose_runs_real_commands_in_order_with_every_setting_documented() -> None:
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    services = compose["services"]
    ours = {name: s for name, s in services.items() if s.get("build", {}).get("dockerfile") == "infra/Dockerfile"}
    assert set(ours) == {"storage-prepare", "migrate", "api", "worker", "push-inbox"}
    for service in ours.values():
        build_parser().parse_args(service["command"])
    for name in ("api", "worker"):
        after = services[name]["depends_on"]
        assert (
            after["migrate"]["condition"] == after["storage-prepare"]["condition"] == "service_completed_successfully"
        )
    assert services["storage-prepare"]["command"] == ["storage", "prepare"]
    assert services["storage-prepare"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"

    example = env_file(INFRA / ".env.example")
    settings = load_settings(example)  # every value set there is valid
    assert f":{settings.worker_metrics_port}/healthz" in " ".join(services["worker"]["healthcheck"]["test"])
    assert settings.fcm_endpoint == "http://push-inbox:8470/v1/projects/{0}/messages:send"
    assert settings.database_url.split("@")[1].startswith("postgres:5432/")
    assert settings.s3_endpoint_url == "http://minio:9000"
    # MinIO's root user is the S3 key Kuzet uses (compose's defaults are the example's values).
    minio = services["minio"]["environment"]
    assert minio["MINIO_ROOT_USER"].endswith(f":-{settings.s3_access_key_id}}}")
    assert minio["MINIO_ROOT_PASSWORD"].endswith(f":-{settings.s3_secret_access_key}}}")
    text = (INFRA / ".env.example").read_text()
    missing = [f"KUZET_{f.upper()}" for f in Settings.__struct_fields__ if f"KUZET_{f.upper()}=" not in text]
    assert missing == [], f"add these settings to infra/.env.example (set, or commented with their default): {missing}"


# --- Kubernetes: a Kustomize renderer for the features these manifests use ----------------------

_KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "labels", "patches"}


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as Kustomize does it for these patches: maps merge, lists of named maps merge
    by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in patch):
        by_name = {item["name"]: item for item in base}
        for item in patch:
            by_name[item["name"]] = _merge(by_name[item["name"]], item) if item["name"] in by_name else item
        return list(by_name.values())
    return patch


def _json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        assert op["op"] in {"replace", "add"}, op
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op["op"] == "add":
                node.insert(index, op["value"])
            else:
                node[index] = op["value"]
        else:
            assert op["op"] == "add" or last in node, f"{op['path']} does not exist"
            node[last] = op["value"]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in {"Deployment", "Job"}:
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    return None


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc) or {}
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def render(directory: Path) -> list[dict[str, Any]]:
    """``kustomize build directory`` for the fields listed in ``_KUSTOMIZATION_FIELDS``."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(k) - _KUSTOMIZATION_FIELDS
    assert not unknown, f"{directory}: this renderer does not know {unknown}; extend it (tests/test_deploy.py)"
    docs: list[dict[str, Any]] = []
    for resource in k.get("resources", []):
        path = directory / resource
        docs += render(path) if path.is_dir() else load_docs(path)
    for patch in k.get("patches", []):
        body = yaml.safe_load((directory / patch["path"]).read_text())
        target = patch.get("target") or {"kind": body["kind"], "name": body["metadata"]["name"]}
        [index] = [
            i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"]) == (target["kind"], target["name"])
        ]
        if isinstance(body, list):
            _json_patch(docs[index], body)
        else:
            docs[index] = _merge(docs[index], body)
    for image in k.get("images", []):
        for doc in docs:
            for container in containers(doc):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    for label in k.get("labels", []):
        assert not label.get("includeSelectors"), "selector labels are not rendered here"
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    if namespace := k.get("namespace"):
        for doc in docs:
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = namespace
    return docs


def validate(doc: dict[str, Any]) -> None:
    if doc["kind"] in KEDA_SCHEMAS:
        schema = json.loads(KEDA_SCHEMAS[doc["kind"]].read_text())
        jsonschema.Draft202012Validator(schema).validate(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def pod_settings(config_map: dict[str, Any]) -> Settings:
    """The settings a pod starts with: the ConfigMap and the example Secret's keys (strong values)."""
    [secret] = [d for d in load_docs(K8S / "base" / "secret.example.yaml") if d["metadata"]["name"] == "kuzet-secrets"]
    strong = {key: secrets.token_urlsafe(32) for key in secret["stringData"]}
    strong["KUZET_DATABASE_URL"] = secret["stringData"]["KUZET_DATABASE_URL"]
    config = {k: v for k, v in config_map["data"].items() if k.startswith("KUZET_")}
    return load_settings(config | strong)


RENDERINGS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}


@pytest.mark.parametrize("name", sorted(RENDERINGS))
def test_manifests_validate_against_kubernetes_and_keda_schemas(name: str) -> None:
    docs = render(RENDERINGS[name])
    kinds = sorted(d["kind"] for d in docs)
    for kind in (
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ScaledObject",
        "Service",
        "TriggerAuthentication",
    ):
        assert kind in kinds
    for doc in docs:
        validate(doc)
    for doc in load_docs(K8S / "base" / "secret.example.yaml"):
        validate(doc)


def test_the_validators_refuse_a_typo_and_a_non_string_trigger_setting() -> None:
    docs = render(RENDERINGS["production"])
    deployment = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    scaled = copy.deepcopy(next(d for d in docs if d["kind"] == "ScaledObject"))
    scaled["spec"]["triggers"][0]["metadata"]["targetQueryValue"] = 2  # KEDA wants strings
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)


def test_the_production_overlay_sets_what_production_needs() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render(RENDERINGS["production"])}
    assert {d["metadata"].get("namespace") for k, d in docs.items() if k[0] != "Namespace"} == {"kuzet"}
    images = {c["image"] for d in docs.values() for c in containers(d)}
    assert images == {"registry.example.kz/kuzet/kuzet:0.1.0"}
    assert docs["ScaledObject", "kuzet-worker"]["spec"]["maxReplicaCount"] == 300
    postgres = docs["NetworkPolicy", "kuzet-postgresql"]["spec"]["egress"][0]
    assert postgres["to"][0]["ipBlock"]["cidr"] == "10.20.0.0/24"
    # The ConfigMap with the Secret's keys (strong values) starts Kuzet in production mode.
    settings = pod_settings(docs["ConfigMap", "kuzet-config"])
    assert settings.is_production
    assert settings.public_base_url.startswith("https://")


@pytest.mark.parametrize("name", sorted(RENDERINGS))
def test_manifests_fit_the_code_and_each_other(name: str, app: Litestar) -> None:
    docs = render(RENDERINGS[name])
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    workloads = {k: d for k, d in by.items() if pod_spec(d) is not None}
    settings = pod_settings(by["ConfigMap", "kuzet-config"])

    def selects(selector: dict[str, Any], doc: dict[str, Any]) -> bool:
        labels = doc["spec"]["template"]["metadata"]["labels"]
        return all(labels.get(k) == v for k, v in selector["matchLabels"].items())

    for doc in workloads.values():
        spec = pod_spec(doc)
        assert spec is not None
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in containers(doc):
            build_parser().parse_args(container["args"])  # a real kuzet command
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert {"requests", "limits"} <= set(container["resources"])
            refs = {ref.get("configMapRef", ref.get("secretRef", {})).get("name") for ref in container["envFrom"]}
            assert refs == {"kuzet-config", "kuzet-secrets"}
        if doc["kind"] == "Deployment":
            assert selects(doc["spec"]["selector"], doc)

    api = by["Deployment", "kuzet-api"]
    worker = by["Deployment", "kuzet-worker"]
    routes = {route.path for route in app.routes}
    [api_container] = containers(api)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert api_container[probe]["httpGet"]["path"] in routes
    assert api_container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api_container["ports"][0]["containerPort"] == int(api_container["args"][-1])
    [worker_container] = containers(worker)
    assert worker_container["ports"][0]["containerPort"] == settings.worker_metrics_port
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert worker_container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    # One confirmation slot per requested core.
    assert float(worker_container["resources"]["requests"]["cpu"]) == settings.worker_concurrency

    assert selects({"matchLabels": by["Service", "kuzet-api"]["spec"]["selector"]}, api)
    assert by["HorizontalPodAutoscaler", "kuzet-api"]["spec"]["scaleTargetRef"]["name"] == "kuzet-api"
    assert selects(by["PodDisruptionBudget", "kuzet-api"]["spec"]["selector"], api)
    assert selects(by["PodDisruptionBudget", "kuzet-worker"]["spec"]["selector"], worker)
    scaled = by["ScaledObject", "kuzet-worker"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "kuzet-worker"
    assert scaled["minReplicaCount"] >= 2  # escalation timers need a worker even without detections
    for trigger in scaled["triggers"]:
        assert ("TriggerAuthentication", trigger["authenticationRef"]["name"]) in by
    backlog = next(t for t in scaled["triggers"] if t["name"] == "confirm-backlog")
    assert float(backlog["metadata"]["targetQueryValue"]) == settings.worker_concurrency

    policies = {n: d["spec"] for (kind, n), d in by.items() if kind == "NetworkPolicy"}
    assert policies["kuzet-default-deny"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policies["kuzet-default-deny"] and "egress" not in policies["kuzet-default-deny"]
    worker_out = {
        port["port"]
        for spec in policies.values()
        if "Egress" in spec["policyTypes"] and _applies(spec["podSelector"], worker)
        for rule in spec.get("egress", [])
        for port in rule["ports"]
    }
    assert worker_out == {53, 5432, 443}  # DNS, PostgreSQL, HTTPS (S3, FCM, webhook targets)
    api_in = [
        spec for spec in policies.values() if "Ingress" in spec["policyTypes"] and _applies(spec["podSelector"], api)
    ]
    assert [p["port"] for spec in api_in for rule in spec.get("ingress", []) for p in rule["ports"]] == [8000]


def _applies(selector: dict[str, Any], doc: dict[str, Any]) -> bool:
    labels = doc["spec"]["template"]["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", []))


async def test_the_autoscaler_runs_the_metrics_own_queries(conn: asyncpg.Connection) -> None:
    scaled = next(d for d in load_docs(K8S / "base" / "worker-scaling.yaml") if d["kind"] == "ScaledObject")
    queries = {t["name"]: t["metadata"]["query"] for t in scaled["spec"]["triggers"]}
    assert queries == {
        "confirm-backlog": queue.LANE_BACKLOG[jobs.Lane.CONFIRM],
        "confirm-oldest": queue.LANE_OLDEST[jobs.Lane.CONFIRM],
        "alert-oldest": queue.LANE_OLDEST[jobs.Lane.ALERT],
        "footage-oldest": queue.LANE_OLDEST[jobs.Lane.FOOTAGE],
    }
    await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=uuid.uuid4()))
    for query in queries.values():  # each runs on the real schema and gives one number
        value = await conn.fetchval(query)
        assert isinstance(value, float)
    assert await conn.fetchval(queries["confirm-backlog"]) == 1.0


# --- alerting rules and dashboard ------------------------------------------------------------------


def exported_metrics() -> dict[str, set[str]]:
    """Every series name the code exports, with its labels (Litestar's HTTP metrics once a request
    has gone through the app)."""
    wrappers = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    wrappers += list(PrometheusMiddleware._metrics.values())
    names: dict[str, set[str]] = {}
    for metric in wrappers:
        labels = set(metric._labelnames)
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
        for suffix in suffixes[metric._type]:
            names[metric._name.removesuffix("_total") + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    names["up"] = set()  # Prometheus' own, per scrape target
    return names


KNOWN_VALUES = {
    "lane": {lane.value for lane in jobs.Lane},
    "kind": set(jobs.PAYLOADS),
    "status": {"queued", "running", "dead"},
    "outcome": {"sent", "retry", "invalid_token", "failed", "done", "dead", "crashed", "delivered", "gone"},
    "job": {"kuzet-api", "kuzet-worker"},
}


def metric_problems(expr: str, exported: dict[str, set[str]]) -> list[str]:
    problems: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name not in exported:
                problems.append(f"{node.name}: not exported by the code")
                return
            for matcher in node.matchers.matchers:
                if matcher.name not in exported[node.name] | {"job", "instance"}:
                    problems.append(f"{node.name}: has no label {matcher.name}")
                known = KNOWN_VALUES.get(matcher.name)
                if known is not None and matcher.value:
                    values = set(matcher.value.split("|")) if "Re" in str(matcher.op) else {matcher.value}
                    if values - known:
                        problems.append(f"{node.name}{{{matcher.name}}}: unknown value(s) {values - known}")

    promql_parser.walk(promql_parser.parse(expr), visit)
    return problems


@pytest.fixture
async def exported(client: Client) -> dict[str, set[str]]:
    await client.get("/readyz")  # Litestar creates its HTTP metrics on the first request
    return exported_metrics()


async def test_alerting_rules_use_only_metrics_the_code_exports(exported: dict[str, set[str]]) -> None:
    rules = yaml.safe_load((INFRA / "prometheus" / "alerts.yaml").read_text())
    names = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert rule["annotations"]["summary"]
            assert metric_problems(rule["expr"], exported) == [], rule["alert"]
            names.append(rule["alert"])
    assert len(names) == len(set(names))
    for must in ("QueueBehind", "NoWorker", "DatabaseDown", "PushFailing", "DeadAlertJobs", "WebhookBacklog"):
        assert any(must in n for n in names), must
    # The check itself catches a wrong name, a wrong label and a wrong value.
    assert len(metric_problems('kuzet_queue_depth{lane="confirm"} > 1', exported)) == 1
    assert len(metric_problems('kuzet_queue_lane_jobs{kind="confirm_detection"} > 1', exported)) == 1
    assert len(metric_problems('kuzet_queue_lane_jobs{lane=~"confirm|urgent"} > 1', exported)) == 1
    with pytest.raises(ValueError):  # noqa: PT011 - the parser's only error type
        promql_parser.parse("sum(rate(kuzet_push_total[5m])")


async def test_the_grafana_dashboard_shows_exported_metrics(exported: dict[str, set[str]]) -> None:
    dashboard = json.loads((INFRA / "grafana" / "kuzet.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    for expr in exprs:
        assert metric_problems(expr, exported) == [], expr
    shown = " ".join(exprs)
    for metric in (
        "kuzet_queue_lane_jobs",
        "kuzet_queue_lane_oldest_seconds",
        "kuzet_confirmation_seconds_bucket",
        "kuzet_push_total",
        "kuzet_webhook_backlog",
        "kuzet_first_ack_seconds_bucket",
        "kuzet_sms_total",
        "kuzet_sms_receipt_seconds_bucket",
    ):
        assert metric in shown, metric
