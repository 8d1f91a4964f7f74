"""deploy/ cannot run here (no container engine), so check what can be checked without running it:
the files parse, every variable they set is a setting the worker reads and the ones it needs are
set, the image runs a real subcommand, the probes hit the real endpoints, and the dashboard and
alerts query only metrics the worker exposes."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from tests.unit.exact_settings import exact_settings
from worker.config.settings import Settings
from worker.entrypoints.cli import app as cli
from worker.ops.health import LIVE_PATH, READY_PATH
from worker.ops.metrics import WorkerMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS = {name.upper() for name in Settings.model_fields}
SUBCOMMANDS = set(typer.main.get_command(cli).commands)  # type: ignore[attr-defined]
WORKER_IMAGE = "refund-worker:local"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document]


def resolved(environment: dict[str, Any]) -> dict[str, str]:
    """Compose's `${NAME:-default}` replaced by its default, every value as the string a process sees."""
    return {key: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)) for key, value in environment.items()}


def settings_from(environment: dict[str, str]) -> Settings:
    """The settings a worker would read from exactly this environment (not the test's own)."""
    return exact_settings(environment)


# --- the image ---------------------------------------------------------------------------------


def dockerfile_final_stage() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1] if " " in line.strip() else "")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    last_from = max(index for index, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def dockerfile_args() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))


def test_image_runs_a_real_subcommand_as_its_command() -> None:
    stage = dict(dockerfile_final_stage())
    assert json.loads(stage["ENTRYPOINT"]) == ["refund-worker"]
    command = json.loads(stage["CMD"])
    assert command == ["run"]
    assert command[0] in SUBCOMMANDS


def test_image_runs_as_a_non_root_user() -> None:
    user = dict(dockerfile_final_stage())["USER"].split(":")[0]
    assert user not in {"0", "root"}


def test_every_base_image_is_pinned_to_an_exact_version() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    stages = set(re.findall(r"^FROM .* AS (\w+)$", text, flags=re.MULTILINE))
    images = [image for image in re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE) if image not in stages]
    assert images
    for image in images:
        for name, value in dockerfile_args().items():
            image = image.replace(f"${{{name}}}", value)
        assert re.search(r"(:\d+\.\d+\.\d+[\w.-]*|@sha256:[0-9a-f]{64})$", image), f"{image} is not pinned"


def test_image_installs_exactly_what_uv_lock_pins() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    syncs = re.findall(r"uv sync [^\n]*", text)
    assert syncs
    assert all("--frozen" in sync for sync in syncs)


def test_image_environment_holds_only_settings_and_python_variables() -> None:
    variables = set()
    for name, value in dockerfile_final_stage():
        if name == "ENV":
            variables |= {assignment.split("=")[0] for assignment in shlex.split(value)}
    assert variables - {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"} <= SETTINGS


# --- compose -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (document,) = load_all(DEPLOY / "compose.yaml")
    return document


def worker_services(compose: dict[str, Any], subcommand: str) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == WORKER_IMAGE and service.get("command") == [subcommand]
    }


def test_compose_runs_two_workers_of_one_group_after_the_migration(compose: dict[str, Any]) -> None:
    workers = worker_services(compose, "run")
    (migrate,) = worker_services(compose, "migrate")
    assert len(workers) == 2
    assert len({service["environment"]["CONSUMER_GROUP"] for service in workers.values()}) == 1
    for service in workers.values():
        assert service["depends_on"][migrate] == {"condition": "service_completed_successfully"}


def test_compose_services_of_the_worker_set_only_settings_it_reads(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        if service.get("image") == WORKER_IMAGE:
            assert service["command"][0] in SUBCOMMANDS
            assert set(service["environment"]) <= SETTINGS


def test_compose_workers_have_what_they_need_and_leave_migrating_to_the_migration_step(
    compose: dict[str, Any],
) -> None:
    for service in worker_services(compose, "run").values():
        environment = resolved(service["environment"])
        found = settings_from(environment)
        assert found.kafka_bootstrap_servers == "kafka:9092"
        assert found.database_url is not None
        assert found.migrate_on_start is False
        assert service["ports"][0].endswith(f":{found.metrics_port}")
        assert f":{found.metrics_port}{READY_PATH}" in " ".join(service["healthcheck"]["test"])
    (migrate,) = worker_services(compose, "migrate").values()
    assert settings_from(resolved(migrate["environment"])).database_url is not None


def test_compose_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"].split(",")
    assert not any("zookeeper" in str(service.get("image", "")) for service in compose["services"].values())


# --- Kubernetes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for document in load_all(path):
            found[
                (document["kind"], document["metadata"]["name"] if "metadata" in document else path.stem)
            ] = document
    return found


def configuration(manifests: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    config = manifests[("ConfigMap", "refund-worker-config")]["data"]
    secret = manifests[("Secret", "refund-worker-secrets")]["stringData"]
    return {**config, **secret}


def test_kustomization_lists_existing_files_and_leaves_secrets_out(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    resources = manifests[("Kustomization", "kustomization")]["resources"]
    assert all((DEPLOY / "k8s" / name).is_file() for name in resources)
    assert "secret.example.yaml" not in resources


def test_config_map_and_secret_hold_only_settings_and_everything_needed(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    environment = configuration(manifests)
    assert set(environment) <= SETTINGS
    found = settings_from(environment)  # also: the TLS/SASL settings are complete and consistent
    assert found.kafka_bootstrap_servers
    assert found.database_url
    assert found.migrate_on_start is False
    assert found.kafka_security_protocol == "SASL_SSL"
    assert found.database_sslmode == "verify-full"


def pod(manifests: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = manifests[(kind, name)]["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize(
    ("kind", "name", "subcommand"),
    [("Deployment", "refund-worker", "run"), ("Job", "refund-worker-migrate", "migrate")],
)
def test_pods_run_a_subcommand_with_the_configuration_limits_and_no_root(
    manifests: dict[tuple[str, str], dict[str, Any]], kind: str, name: str, subcommand: str
) -> None:
    spec = pod(manifests, kind, name)
    (container,) = spec["containers"]
    assert container["args"] == [subcommand]
    assert subcommand in SUBCOMMANDS
    assert container["envFrom"] == [
        {"configMapRef": {"name": "refund-worker-config"}},
        {"secretRef": {"name": "refund-worker-secrets"}},
    ]
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    environment = configuration(manifests)
    for path in (environment["KAFKA_SSL_CAFILE"], environment["DATABASE_SSLROOTCERT"]):
        assert str(Path(path).parent) in mounts, f"{path} is not on a mounted volume"


def test_tls_files_the_configuration_names_are_keys_of_the_mounted_secret(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    volumes = {volume["name"]: volume for volume in pod(manifests, "Deployment", "refund-worker")["volumes"]}
    secret = manifests[("Secret", volumes["tls"]["secret"]["secretName"])]["stringData"]
    environment = configuration(manifests)
    assert {Path(environment[key]).name for key in ("KAFKA_SSL_CAFILE", "DATABASE_SSLROOTCERT")} <= set(
        secret
    )


def test_probes_hit_the_health_endpoints_on_the_metrics_port(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    (container,) = pod(manifests, "Deployment", "refund-worker")["containers"]
    found = settings_from(configuration(manifests))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["metrics"] == found.metrics_port
    probes = {
        name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert {name: (probe["path"], probe["port"]) for name, probe in probes.items()} == {
        "startupProbe": (LIVE_PATH, "metrics"),
        "livenessProbe": (LIVE_PATH, "metrics"),
        "readinessProbe": (READY_PATH, "metrics"),
    }
    assert container["readinessProbe"]["timeoutSeconds"] > found.health_check_timeout_seconds


# --- dashboard and alerts ----------------------------------------------------------------------

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}


def exposed_metric_names() -> set[str]:
    metrics = WorkerMetrics()
    metrics.faststream_middleware()  # registers FastStream's metrics in the worker's registry
    return {family.name + suffix for family in metrics.registry.collect() for suffix in SUFFIXES[family.type]}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    return {
        match.group()
        for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][\w:]*", expr)
        if match.group() not in PROMQL_WORDS and not expr[match.end() :].lstrip().startswith("(")
    }


def test_metric_names_finds_only_selected_metrics() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, topic) (rate(a_bucket{kind="x y"}[$__rate_interval]))) '
        "and on (instance) b > 2 unless absent(c)"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c"}


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "refund-worker-dashboard.json").read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_queries() -> list[str]:
    (rules,) = load_all(DEPLOY / "prometheus" / "alerts.yaml")
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("source", [dashboard_queries, alert_queries], ids=["dashboard", "alerts"])
def test_queries_use_only_metrics_the_worker_exposes(source: Any) -> None:
    exposed = exposed_metric_names()
    queries = source()
    assert queries
    for expr in queries:
        used = metric_names(expr)
        assert used, f"no metric in {expr!r}"
        assert used <= exposed, f"{sorted(used - exposed)} in {expr!r} are not metrics of the worker"


def test_dashboard_shows_every_metric_of_the_worker_itself() -> None:
    ours = {name for name in exposed_metric_names() if name.startswith("refund_worker_")}
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in ours}
    faststream = {"refund_worker_received", "refund_worker_published"}
    used = set().union(*(metric_names(expr) for expr in dashboard_queries()))
    shown = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in used}
    assert {family for family in families if not family.startswith(tuple(faststream))} <= shown


# --- runbooks ----------------------------------------------------------------------------------

PRODUCTION_DOC = DEPLOY.parent / "docs" / "production.md"
RUNBOOK_PREFIX = "docs/production.md#"


def alert_rules() -> list[dict[str, Any]]:
    (rules,) = load_all(DEPLOY / "prometheus" / "alerts.yaml")
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces to '-'."""
    headings = re.findall(r"^#{1,6} (.+?)\s*$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_heading_anchors_are_the_ones_github_makes() -> None:
    assert heading_anchors("# Kafka over TLS/SASL, PostgreSQL\n### RefundWorkerAbsent \n") == {
        "kafka-over-tlssasl-postgresql",
        "refundworkerabsent",
    }


def test_every_alert_links_a_runbook_section_of_the_production_guide() -> None:
    anchors = heading_anchors(PRODUCTION_DOC.read_text(encoding="utf-8"))
    rules = alert_rules()
    assert rules
    for rule in rules:
        url = rule["annotations"].get("runbook_url", "")
        assert url.startswith(RUNBOOK_PREFIX), f"{rule['alert']} has no runbook_url into docs/production.md"
        assert url.removeprefix(RUNBOOK_PREFIX) in anchors, f"{url} of {rule['alert']} is no section"


def test_every_runbook_says_what_it_means_what_to_check_and_what_to_do() -> None:
    text = PRODUCTION_DOC.read_text(encoding="utf-8")
    for rule in alert_rules():
        section = text.split(f"\n### {rule['alert']}\n", 1)[1].split("\n#", 1)[0]
        for part in ("**What it means.**", "**What to check.**", "**What to do.**"):
            assert part in section, f"the runbook of {rule['alert']} lacks {part}"
