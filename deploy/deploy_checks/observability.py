"""Alert rules (promtool check + promtool's rule unit tests) and the Grafana
dashboard (structure, every keyops metric shown, and every panel query
parsed by promtool's PromQL parser)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .common import DEPLOY, KNOWN_METRICS, Report, first_line, metric_names, run, tool, unknown_metrics

OBS = DEPLOY / "observability"
RULES = OBS / "alerts.yaml"
RULE_TESTS = OBS / "alerts.test.yaml"
DASHBOARD = OBS / "grafana-dashboard.json"
#: Issue 7: what the alert rules must cover, by the metric that shows it.
REQUIRED_ALERT_METRICS = {
    "rotation failures": "keyops_rotations_total",
    "keys overdue": "keyops_keys_overdue",
    "rotation stuck past its lease": "keyops_rotations_stuck",
    "verify error rate": "keyops_http_requests_total",
    "high-severity findings": "keyops_findings_total",
    "webhook signature failures": "keyops_webhook_signature_failures_total",
}
#: Grafana's variables, replaced by something PromQL-valid before parsing.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${datasource}": "prometheus",
    "$job": "keyops",
}
_GRID_WIDTH = 24


def check_rules(report: Report) -> None:
    promtool = tool("promtool", "KEYOPS_PROMTOOL")
    report.note(f"promtool: {first_line(run([promtool, '--version']).stdout)}")
    result = run([promtool, "check", "rules", str(RULES)])
    if result.returncode != 0:
        report.fail(f"promtool check rules: {(result.stderr or result.stdout).strip()}")
        return
    result = run([promtool, "test", "rules", RULE_TESTS.name], cwd=OBS)
    if result.returncode != 0:
        report.fail(f"promtool test rules:\n{(result.stdout + result.stderr).strip()}")
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    rules = [r for g in groups for r in g["rules"]]
    exprs = [str(r["expr"]) for r in rules]
    for name in sorted(unknown_metrics(exprs)):
        report.fail(f"alerts.yaml: {name} is not a keyops metric")
    used = {name for expr in exprs for name in metric_names(expr)}
    for purpose, metric in REQUIRED_ALERT_METRICS.items():
        report.expect(metric in used, f"alerts.yaml: no alert for {purpose} ({metric})")
    tested = {
        t["alertname"]
        for case in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    for rule in rules:
        if "alert" in rule:
            report.expect(rule["alert"] in tested, f"alerts.test.yaml: no test where {rule['alert']} fires")
            report.expect(rule.get("labels", {}).get("severity") in ("critical", "warning", "info"), "severity label")


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def check_dashboard(report: Report) -> None:
    try:
        dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        report.fail(f"grafana-dashboard.json is not JSON: {exc}")
        return
    for key in ("title", "uid", "panels", "schemaVersion", "templating"):
        report.expect(key in dashboard, f"dashboard: no {key}")
    report.expect(dashboard.get("id") is None, "dashboard: drop the instance-specific id before committing")
    variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    report.expect("datasource" in variables, "dashboard: no datasource variable (hard-coded data source?)")
    panels = _panels(dashboard)
    ids = [p.get("id") for p in panels]
    report.expect(len(ids) == len(set(ids)), "dashboard: panel ids are not unique")
    cells: dict[tuple[int, int], int] = {}
    exprs: list[tuple[str, str]] = []
    for panel in panels:
        grid = panel.get("gridPos", {})
        x, y, w, h = (grid.get(k) for k in ("x", "y", "w", "h"))
        if not all(isinstance(v, int) for v in (x, y, w, h)):
            report.fail(f"dashboard panel {panel.get('title')!r}: incomplete gridPos")
            continue
        assert isinstance(x, int) and isinstance(y, int) and isinstance(w, int) and isinstance(h, int)
        report.expect(x + w <= _GRID_WIDTH, f"dashboard panel {panel.get('title')!r} is wider than the grid")
        for cx in range(x, x + w):
            for cy in range(y, y + h):
                other = cells.setdefault((cx, cy), panel["id"])
                if other != panel["id"]:
                    report.fail(f"dashboard panels {other} and {panel['id']} overlap at x={cx}, y={cy}")
                    break
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        report.expect(bool(targets), f"dashboard panel {panel.get('title')!r} has no query")
        for target in targets:
            exprs.append((panel.get("title", "?"), target.get("expr", "")))
    for name in sorted(unknown_metrics(e for _, e in exprs)):
        report.fail(f"dashboard: {name} is not a keyops metric")
    shown = {name for _, expr in exprs for name in metric_names(expr)}
    for name in sorted(set(KNOWN_METRICS) - shown):
        report.fail(f"dashboard: no panel shows {name}")
    _parse_with_promtool(report, exprs)


def _parse_with_promtool(report: Report, exprs: list[tuple[str, str]]) -> None:
    """promtool has no "parse this query" command, so each panel query becomes
    a recording rule and `promtool check rules` parses them all."""
    promtool = tool("promtool", "KEYOPS_PROMTOOL")
    rules = [{"record": f"dashboard:panel_{i}", "expr": _promql(expr)} for i, (_, expr) in enumerate(exprs)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboard-queries.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
        result = run([promtool, "check", "rules", str(path)])
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        indexes = sorted({int(m) for m in re.findall(r"dashboard:panel_(\d+)", output)})
        titles = [exprs[i][0] for i in indexes] or ["?"]
        for title in titles:
            report.fail(f"dashboard query of panel {title!r} does not parse: {output[-300:]}")
