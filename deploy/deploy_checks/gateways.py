"""The gateway examples in deploy/gateways/ must agree with /v1/authz:
the path, the token header, and only headers keyops actually answers with.
NGINX's file is also checked by ``nginx -t`` when nginx is installed (the
end-to-end test runs it for real); Envoy's and Traefik's are parsed and
checked only, no Envoy or Traefik runs here."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .common import DEPLOY, ROOT, Report

GATEWAYS = DEPLOY / "gateways"
_AUTHZ = ROOT / "keyops" / "api" / "authz.py"


def emitted_headers() -> set[str]:
    """Response header names /v1/authz can send (the byte literals in its module)."""
    text = _AUTHZ.read_text(encoding="utf-8")
    return {m.lower() for m in re.findall(r'\(b"([a-z0-9-]+)", ', text)} | {"www-authenticate"}


def _token_header() -> str:
    from keyops.config import AuthzSettings

    return AuthzSettings().token_header.lower()


def check_nginx(report: Report, emitted: set[str]) -> None:
    path = GATEWAYS / "nginx.conf"
    text = path.read_text(encoding="utf-8")
    for needed in ("auth_request /_keyops;", "proxy_pass http://keyops/v1/authz;", "proxy_pass_request_body off;"):
        report.expect(needed in text, f"{path.name}: no {needed!r}")
    report.expect("X-Original-URI $request_uri" in text, f"{path.name}: X-Original-URI must carry $request_uri")
    report.expect(
        f"proxy_set_header {_token_header()}".lower() in text.lower() or "keyops-token.conf" in text,
        f"{path.name}: the gateway token header is not set",
    )
    for name in re.findall(r"\$upstream_http_([a-z0-9_]+)", text):
        header = name.replace("_", "-")
        report.expect(header in emitted, f"{path.name}: keyops never answers with {header}")
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        report.note("nginx not installed: nginx -t skipped (the end-to-end test needs it)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "token.conf").write_text('proxy_set_header X-Keyops-Token "t";\n')
        body = text.replace("/etc/nginx/keyops-token.conf", str(work / "token.conf"))
        body = body.replace("/var/log/nginx/keyops-api.log", str(work / "access.log"))
        temps = "".join(f"{k}_temp_path {work / k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = work / "nginx.conf"
        conf.write_text(
            f"pid {work / 'nginx.pid'};\nerror_log {work / 'error.log'};\nevents {{}}\n"
            f"http {{\n{temps}access_log off;\n{body}\n}}\n"
        )
        done = subprocess.run([nginx, "-t", "-q", "-p", tmp, "-c", str(conf)], capture_output=True, text=True)
        report.expect(done.returncode == 0, f"{path.name}: nginx -t failed: {done.stderr.strip()[-400:]}")


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def check_envoy(report: Report, emitted: set[str]) -> None:
    path = GATEWAYS / "envoy.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    filters = [n for n in _walk(doc) if n.get("name") == "envoy.filters.http.ext_authz"]
    report.expect(len(filters) == 1, f"{path.name}: expected one ext_authz filter")
    if not filters:
        return
    config = filters[0]["typed_config"]
    service = config.get("http_service", {})
    report.expect(service.get("path_prefix") == "/v1/authz", f"{path.name}: path_prefix must be /v1/authz")
    report.expect(config.get("failure_mode_allow") is False, f"{path.name}: failure_mode_allow must be false")
    clusters = {c["name"] for c in doc["static_resources"]["clusters"]}
    report.expect(service.get("server_uri", {}).get("cluster") in clusters, f"{path.name}: unknown keyops cluster")
    added = {h["key"].lower() for h in service.get("authorization_request", {}).get("headers_to_add", [])}
    report.expect(_token_header() in added, f"{path.name}: the gateway token header is not added")
    response = service.get("authorization_response", {})
    for section in ("allowed_client_headers", "allowed_client_headers_on_success"):
        for pattern in response.get(section, {}).get("patterns", []):
            if "exact" in pattern:
                report.expect(pattern["exact"] in emitted, f"{path.name}: keyops never answers with {pattern['exact']}")
    upstream = [p.get("prefix") for p in response.get("allowed_upstream_headers", {}).get("patterns", [])]
    report.expect("x-keyops-" in upstream, f"{path.name}: X-Keyops-* must go upstream")


def check_traefik(report: Report, emitted: set[str]) -> None:
    path = GATEWAYS / "traefik.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    middlewares = doc["http"]["middlewares"]
    auth = [m["forwardAuth"] for m in middlewares.values() if "forwardAuth" in m]
    report.expect(len(auth) == 1, f"{path.name}: expected one forwardAuth middleware")
    if auth:
        report.expect(auth[0]["address"].endswith("/v1/authz"), f"{path.name}: address must end in /v1/authz")
        report.expect(auth[0].get("trustForwardHeader") is False, f"{path.name}: trustForwardHeader must be false")
        for header in auth[0].get("authResponseHeaders", []):
            report.expect(header.lower() in emitted, f"{path.name}: keyops never answers with {header}")
    for name, router in doc["http"]["routers"].items():
        for used in router.get("middlewares", []):
            report.expect(used in middlewares, f"{path.name}: router {name} uses unknown middleware {used}")
        report.expect(router.get("service") in doc["http"]["services"], f"{path.name}: router {name}: no service")


def check(report: Report) -> None:
    emitted = emitted_headers()
    check_nginx(report, emitted)
    check_envoy(report, emitted)
    check_traefik(report, emitted)
