"""``keyops replay`` with CloudTrail records of an adopted IAM key: the S3
``{"Records": [...]}`` shape (gzipped too) and JSON lines, mapped to usage
events by access key id; other principals' records are ignored, bad ones
reported; a leaked key's burst from a new network becomes a finding."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keyops.detect import cloudtrail
from keyops.detect.cloudtrail import looks_like_cloudtrail, to_usage
from tests.integration import iam_support as iam
from tests.support.servers import MotoServer


def record(access_key_id: str, when: datetime, ip: str, agent: str, **extra: Any) -> dict[str, Any]:
    doc = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDACKCEVSQ6C2EXAMPLE",
            "arn": "arn:aws:iam::123456789012:user/deployer",
            "accountId": "123456789012",
            "accessKeyId": access_key_id,
            "userName": "deployer",
        },
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "s3.amazonaws.com",
        "eventName": "ListBuckets",
        "awsRegion": "us-east-1",
        "sourceIPAddress": ip,
        "userAgent": agent,
        "requestParameters": None,
        "responseElements": None,
        "requestID": "1D2C3B4A5E6F7A8B",
        "eventID": "3d3e0ba5-a7b0-4cf4-9d2e-2e5f0c0f2f11",
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": "123456789012",
    }
    doc.update(extra)
    return doc


def test_mapping_of_one_record() -> None:
    when = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    doc = to_usage(record("AKIAEXAMPLE", when, "203.0.113.7", "aws-cli/2.15", errorCode="AccessDenied"), "k")
    assert doc == {
        "ts": "2026-11-20T12:00:00Z",
        "key_id": "k",
        "ip": "203.0.113.7",
        "user_agent": "aws-cli/2.15",
        "endpoint": "s3.amazonaws.com/ListBuckets",
        "status": 403,
    }
    service = to_usage(record("AKIAEXAMPLE", when, "ec2.amazonaws.com", ""), "k")
    assert isinstance(service, dict) and "ip" not in service and service["status"] == 200


def test_replay_cloudtrail_for_an_adopted_key(
    env: dict[str, str], aws_env: dict[str, str], moto_server: MotoServer, store_prefix: str, cli: Any, tmp_path: Path
) -> None:
    full = iam.iam_env(env, aws_env, moto_server)
    user, first = iam.new_user(moto_server)
    app = iam.build_app(full)
    try:
        iam.adopt(app, "ci/trail", user, f"aws-sm:{store_prefix}trail")
    finally:
        app.close()
    ours = first["AccessKeyId"]
    start = datetime.now(UTC) - timedelta(days=5)
    rows = [
        record(ours, start + timedelta(minutes=i), "198.51.100.20", "terraform/1.7 aws-sdk-go/1.50")
        for i in range(4 * 1440)  # four days of steady use from the CI network
    ]
    burst = start + timedelta(days=4, hours=1)
    rows += [
        record(ours, burst + timedelta(seconds=10 * i), "203.0.113.66", "python-requests/2.31 boto3/1.34")
        for i in range(6 * 120)  # the leaked key, used hard from somewhere new for two hours
    ]
    rows += [record("ASIATEMPORARYEXAMPLE", burst, "198.51.100.20", "console"), {"userIdentity": {"accessKeyId": ours}}]

    s3_file = tmp_path / "trail.json.gz"
    s3_file.write_bytes(gzip.compress(json.dumps({"Records": rows}).encode()))
    result = cli("replay", str(s3_file), "--dry-run", "--json", extra_env=full)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["events"] == len(rows) - 2 and report["skipped"] == 2, report
    assert "no eventTime" in result.stderr and "1 records: access keys keyops does not manage" in result.stderr
    detectors = {f["detector"] for f in report["findings"]}
    assert "network" in detectors, report["findings"]

    lines = tmp_path / "trail.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in rows[:50]) + "\nnot json\n")
    assert looks_like_cloudtrail(str(lines))
    app = iam.build_app(full)
    try:
        accepted, _, problems = cloudtrail.replay(app.detection.replay_session(dry_run=True), str(lines), app.sessions)
    finally:
        app.close()
    assert accepted == 50 and len(problems) == 1 and problems[0].startswith("line 51: not JSON"), problems


@pytest.mark.parametrize("content", [b"", b"{}", b'{"ts": 1}'])
def test_usage_files_are_not_mistaken_for_cloudtrail(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "usage.jsonl"
    path.write_bytes(content)
    assert not looks_like_cloudtrail(str(path))
