"""The example IAM policy (deploy/aws/keyops-iam-policy.json) must be a
well-formed policy that allows every AWS operation keyops' code calls, so
adding a boto3 call without updating the policy fails here, not in
production with AccessDenied."""

from __future__ import annotations

import json
import re

from .common import DEPLOY, ROOT, Report

POLICY = DEPLOY / "aws" / "keyops-iam-policy.json"
#: Code that talks to AWS, and the IAM service prefix of its client.
CALLERS = {
    "keyops/stores/aws_sm.py": "secretsmanager",
    "keyops/issuers/aws_iam.py": "iam",
    "keyops/issuers/janitor.py": "iam",
}
#: Operations that need no IAM permission.
UNCHECKED = {"sts:GetCallerIdentity"}
_SNAKE = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def operations_in_code() -> set[str]:
    """Every snake_case word in the AWS-facing modules that is an operation
    of that service's boto3 client (botocore's own service model)."""
    import botocore.session

    session = botocore.session.get_session()
    found: set[str] = set()
    for path, service in CALLERS.items():
        source = ROOT / path
        if not source.is_file():
            continue
        operations = {_snake(name): name for name in session.get_service_model(service).operation_names}
        for word in set(_SNAKE.findall(source.read_text(encoding="utf-8"))):
            if word in operations:
                found.add(f"{service}:{operations[word]}")
    return found - UNCHECKED


def check(report: Report) -> None:
    try:
        policy = json.loads(POLICY.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        report.fail(f"{POLICY.name} is not JSON: {exc}")
        return
    report.expect(policy.get("Version") == "2012-10-17", f"{POLICY.name}: Version must be 2012-10-17")
    allowed: set[str] = set()
    for index, statement in enumerate(policy.get("Statement", [])):
        where = f"{POLICY.name} statement {statement.get('Sid', index)}"
        for key in ("Effect", "Action", "Resource"):
            report.expect(key in statement, f"{where}: no {key}")
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        for action in actions:
            report.expect(bool(re.fullmatch(r"[a-z0-9-]+:[A-Z][A-Za-z0-9]*", action)), f"{where}: odd action {action}")
        if statement.get("Effect") == "Allow":
            allowed.update(actions)
    needed = operations_in_code()
    report.expect(bool(needed), "no AWS operations found in keyops' code: is the pattern still right?")
    for operation in sorted(needed - allowed):
        report.fail(f"keyops calls {operation}, which {POLICY.name} does not allow")
    report.note(f"{len(needed)} AWS operations used by keyops, all allowed")
