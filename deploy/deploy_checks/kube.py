"""Kubernetes manifests: schema validation (kubernetes-validate, strict, for
the oldest and newest Kubernetes version supported), the Prometheus
Operator kinds against deploy/deploy_checks/schemas, and the cross-references a
schema cannot see (selectors, ports, Secret keys, settings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .common import DEPLOY, Report, ToolMissing, check_env_names, check_settings_file

KUBE_DIR = DEPLOY / "kubernetes"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
#: preStop "sleep" handlers are on by default from 1.30.
MIN_KUBERNETES = "1.30"
CRD_SCHEMAS = {"ServiceMonitor": "servicemonitor.schema.json", "PrometheusRule": "prometheusrule.schema.json"}
NOT_IN_KUSTOMIZATION = {"secret.example.yaml"}


def load_manifests() -> dict[str, list[dict[str, Any]]]:
    docs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(KUBE_DIR.glob("*.yaml")):
        docs[path.name] = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    return docs


def _validate_schemas(report: Report, manifests: dict[str, list[dict[str, Any]]]) -> None:
    try:
        import jsonschema
        import kubernetes_validate
        from kubernetes_validate import utils as kv
    except ImportError as exc:
        raise ToolMissing(f"kubernetes-validate is not installed ({exc}); run: sh deploy/tools.sh") from None
    versions = [MIN_KUBERNETES, kv.latest_version()]
    report.note(f"kubernetes-validate {kubernetes_validate.__version__}, strict, Kubernetes {' and '.join(versions)}")
    for name, docs in manifests.items():
        if name == "kustomization.yaml":
            continue
        for doc in docs:
            label = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            kind = doc.get("kind", "")
            if kind in CRD_SCHEMAS:
                schema = json.loads((SCHEMAS / CRD_SCHEMAS[kind]).read_text(encoding="utf-8"))
                errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
                for error in errors:
                    where = "/".join(str(p) for p in error.absolute_path)
                    report.fail(f"{label}: {where}: {error.message}")
                continue
            for version in versions:
                try:
                    kv.validate(doc, version, strict=True)
                except kv.ValidationError as exc:
                    where = "/".join(str(p) for p in exc.absolute_path)
                    report.fail(f"{label}: Kubernetes {version}: {where}: {exc.message}")
                except kv.SchemaNotFoundError as exc:
                    report.fail(f"{label}: {exc.message}")


def _one(manifests: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    found = [d for docs in manifests.values() for d in docs if d.get("kind") == kind]
    if len(found) > 1:  # keyops' own, beside those of the services it needs (NATS)
        found = [d for d in found if d.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/name") == "keyops"]
    if len(found) != 1:
        raise LookupError(f"expected exactly one {kind}, found {len(found)}")
    return found[0]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("initContainers", [])) + list(pod_spec.get("containers", []))


def _cross_check(report: Report, manifests: dict[str, list[dict[str, Any]]]) -> None:
    try:
        deploy = _one(manifests, "Deployment")
        job = _one(manifests, "Job")
        service = _one(manifests, "Service")
        pdb = _one(manifests, "PodDisruptionBudget")
        netpol = _one(manifests, "NetworkPolicy")
        monitor = _one(manifests, "ServiceMonitor")
        configmap = _one(manifests, "ConfigMap")
        secret = _one(manifests, "Secret")
    except LookupError as exc:
        report.fail(str(exc))
        return
    spec = deploy["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    pod = spec["template"]["spec"]
    report.expect(spec.get("replicas", 1) >= 2, "deployment.yaml: run at least 2 replicas")
    report.expect(_matches(spec["selector"]["matchLabels"], pod_labels), "Deployment selector misses its own pods")
    report.expect(_matches(service["spec"]["selector"], pod_labels), "Service selector does not select keyops pods")
    report.expect(_matches(pdb["spec"]["selector"]["matchLabels"], pod_labels), "PDB selector misses keyops pods")
    report.expect(
        _matches(netpol["spec"]["podSelector"]["matchLabels"], pod_labels)
        and _matches(netpol["spec"]["podSelector"]["matchLabels"], job["spec"]["template"]["metadata"]["labels"]),
        "NetworkPolicy must select the server pods and the migration Job's pods",
    )
    report.expect(
        _matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]),
        "ServiceMonitor selector does not select the Service",
    )
    port_names = {p.get("name") for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        report.expect(endpoint.get("port") in port_names, f"ServiceMonitor port {endpoint.get('port')} not in Service")
    main = next((c for c in pod["containers"] if c["name"] == "keyops"), None)
    if main is None:
        report.fail("deployment.yaml: no container named keyops")
        return
    report.expect(main.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness probe /readyz")
    report.expect(main.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness probe /healthz")
    report.expect(main.get("args", [])[:1] == ["serve"], "the keyops container must run `keyops serve`")
    job_args = job["spec"]["template"]["spec"]["containers"][0].get("args")
    report.expect(job_args == ["db", "upgrade"], "the migration Job must run `keyops db upgrade`")
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    env_names: list[str] = []
    for owner, pod_spec in (("Deployment", pod), ("Job", job["spec"]["template"]["spec"])):
        report.expect(pod_spec.get("securityContext", {}).get("runAsNonRoot") is True, f"{owner}: runAsNonRoot")
        for container in _containers(pod_spec):
            where = f"{owner} container {container['name']}"
            resources = container.get("resources", {})
            report.expect(bool(resources.get("requests")), f"{where}: no resource requests")
            report.expect("memory" in resources.get("limits", {}), f"{where}: no memory limit")
            context = container.get("securityContext", {})
            report.expect(context.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation")
            report.expect(context.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
            for env in container.get("env", []):
                env_names.append(env["name"])
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    report.expect(ref["name"] == secret["metadata"]["name"], f"{where}: Secret {ref['name']}?")
                    report.expect(ref["key"] in secret_keys, f"{where}: key {ref['key']} not in secret.example.yaml")
    check_env_names(report, env_names, "kubernetes")
    check_settings_file(report, configmap["data"]["keyops.toml"], "configmap.yaml keyops.toml")


def _check_kustomization(report: Report, manifests: dict[str, list[dict[str, Any]]]) -> None:
    kustomization = manifests.get("kustomization.yaml", [{}])[0]
    listed = set(kustomization.get("resources", []))
    present = set(manifests) - {"kustomization.yaml"}
    for missing in sorted(listed - present):
        report.fail(f"kustomization.yaml lists {missing}, which does not exist")
    for unlisted in sorted(present - listed - NOT_IN_KUSTOMIZATION):
        report.fail(f"{unlisted} is not listed in kustomization.yaml")
    image_names = {i["name"] for i in kustomization.get("images", [])}
    for name, docs in manifests.items():
        for doc in docs:
            pod_spec = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in _containers(pod_spec):
                report.expect(container["image"] in image_names, f"{name}: image {container['image']} not in images:")


def _check_rules_in_sync(report: Report, manifests: dict[str, list[dict[str, Any]]]) -> None:
    rules = yaml.safe_load((DEPLOY / "observability" / "alerts.yaml").read_text(encoding="utf-8"))
    try:
        prometheus_rule = _one(manifests, "PrometheusRule")
    except LookupError as exc:
        report.fail(str(exc))
        return
    if prometheus_rule["spec"]["groups"] != rules["groups"]:
        report.fail("prometheusrule.yaml differs from observability/alerts.yaml: run python deploy/check.py --sync")


def check(report: Report) -> None:
    manifests = load_manifests()
    _validate_schemas(report, manifests)
    _cross_check(report, manifests)
    _check_kustomization(report, manifests)
    _check_rules_in_sync(report, manifests)


def sync_prometheus_rule() -> Path:
    """Write prometheusrule.yaml from observability/alerts.yaml."""
    rules = yaml.safe_load((DEPLOY / "observability" / "alerts.yaml").read_text(encoding="utf-8"))
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "keyops", "labels": {"app.kubernetes.io/name": "keyops", "release": "prometheus"}},
        "spec": {"groups": rules["groups"]},
    }
    header = (
        "# Generated from deploy/observability/alerts.yaml by `python deploy/check.py --sync`;\n"
        "# edit alerts.yaml, not this file (deploy/check.py fails when they differ).\n"
    )
    path = KUBE_DIR / "prometheusrule.yaml"
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=100), encoding="utf-8")
    return path
