"""Write deploy/k8s/prometheus-rule.yaml: the PrometheusRule (Prometheus operator) holding exactly
the groups of deploy/prometheus/alerts.yaml, which stays the one file to edit.

    python deploy/prometheus/prometheus_rule.py           # rewrite it from alerts.yaml
    python deploy/prometheus/prometheus_rule.py --check   # exit 1 when it differs from alerts.yaml

tests/unit/test_deploy_k8s.py fails when the committed file falls behind alerts.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[1]
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
RULE = DEPLOY / "k8s" / "prometheus-rule.yaml"
COMMAND = "deploy/prometheus/prometheus_rule.py"
HEADER = """\
# GENERATED from deploy/prometheus/alerts.yaml by deploy/prometheus/prometheus_rule.py: edit
# alerts.yaml, then run `./dev python deploy/prometheus/prometheus_rule.py`. If your Prometheus
# selects rules by a label (kube-prometheus-stack: `release: <its release>`), add it in an overlay.
"""


def prometheus_rule(alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "refund-worker"},
        "spec": {"groups": alerts["groups"]},
    }


def render(alerts_text: str) -> str:
    document = prometheus_rule(yaml.safe_load(alerts_text))
    return HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when it differs")
    expected = render(ALERTS.read_text(encoding="utf-8"))
    if parser.parse_args().check:
        if not RULE.is_file() or RULE.read_text(encoding="utf-8") != expected:
            sys.stderr.write(f"{RULE} is out of date: run ./dev python {COMMAND}\n")
            return 1
        return 0
    RULE.write_text(expected, encoding="utf-8")
    sys.stdout.write(f"wrote {RULE}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
