#!/usr/bin/env python3
"""Static checks of everything in deploy/ (no Docker engine or cluster needed).

    python deploy/check.py                 # every check; exit 1 if any fails
    python deploy/check.py --skip-missing  # a missing tool skips its check instead of failing it
    python deploy/check.py --only systemd  # one group (see --help)
    python deploy/check.py --sync          # rewrite kubernetes/prometheusrule.yaml from alerts.yaml

The tools (deploy/requirements-check.txt, promtool, systemd-analyze) are
installed by `sh deploy/tools.sh`. keyops itself must be importable: the
checks compare setting and metric names with the code.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from deploy_checks import aws, container, docs, gateways, kube, observability, pins, systemd
from deploy_checks.common import Report, ToolMissing

GROUPS: dict[str, tuple[str, Callable[[Report], None]]] = {
    "kubernetes": ("Kubernetes manifests", kube.check),
    "dockerfile": ("Dockerfile and .dockerignore", container.check_dockerfile),
    "compose": ("compose file", container.check_compose),
    "systemd": ("systemd unit", systemd.check),
    "alerts": ("Prometheus alert rules", observability.check_rules),
    "dashboard": ("Grafana dashboard", observability.check_dashboard),
    "docs": ("keyops commands in deploy/", docs.check),
    "aws": ("example IAM policy", aws.check),
    "pins": ("constraints.txt and its users", pins.check),
    "gateways": ("NGINX, Envoy and Traefik examples for /v1/authz", gateways.check),
}


def run_group(key: str, skip_missing: bool) -> Report:
    title, func = GROUPS[key]
    report = Report(title)
    try:
        func(report)
    except ToolMissing as exc:
        if skip_missing:
            report.skipped = str(exc)
        else:
            report.fail(str(exc))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(GROUPS), help="run only this group (repeatable)")
    parser.add_argument(
        "--skip-missing", action="store_true", help="skip, rather than fail, checks whose tool is missing"
    )
    parser.add_argument("--sync", action="store_true", help="regenerate kubernetes/prometheusrule.yaml and exit")
    args = parser.parse_args(argv)
    if args.sync:
        print(f"wrote {kube.sync_prometheus_rule()}")
        return 0
    failed = skipped = 0
    for key in args.only or list(GROUPS):
        started = time.monotonic()
        report = run_group(key, args.skip_missing)
        elapsed = time.monotonic() - started
        if report.skipped:
            skipped += 1
            print(f"SKIP {report.name}: {report.skipped}")
            continue
        status = "FAIL" if report.problems else "ok  "
        print(f"{status} {report.name} ({elapsed:.1f}s)")
        for note in report.notes:
            print(f"       {note}")
        for problem in report.problems:
            print(f"     x {problem}")
        failed += bool(report.problems)
    total = len(args.only or GROUPS)
    if failed:
        print(f"deploy checks FAILED: {failed} of {total} groups failed, {skipped} skipped")
        return 1
    print(f"deploy checks OK: {total - skipped} of {total} groups clean, {skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
