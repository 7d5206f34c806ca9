"""Test doubles for the vendors, built from their documented examples.

- a test PKI: a CA, a TLS certificate for 127.0.0.1, and an RSA "SNS signing"
  certificate; a local HTTPS server serves the certificate, SNS's
  SubscribeURL and a GitHub-style public key document;
- :class:`RoutingFetcher`: keyops' own :class:`HttpFetcher` (TLS verified
  against the test CA) with the URL's origin swapped for the local server, so
  the receiver still validates the real-looking AWS/GitHub URL first;
- builders that sign deliveries the way each vendor does. The signing code
  here is written from the vendors' documentation, independently of
  ``keyops.alerts``, so a mistake on one side makes the tests fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from keyops.alerts.base import HttpFetcher

TOPIC = "arn:aws:sns:us-east-1:123456789012:keyops-alerts"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
UNSUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
    "&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:keyops-alerts:c9135db0-26c4-47ec-8998-413945fb5a96"
)
GITHUB_META = "https://api.github.com/meta/public_keys/secret_scanning"
GITHUB_KEY_ID = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"keyops-test-standard-secret-0001").decode()
GRAFANA_SECRET = "grafana-hmac-test-secret-0001"
AM_TOKEN = "alertmanager-test-token-0001"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Pki:
    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    sns_key: rsa.RSAPrivateKey
    sns_cert_pem: bytes
    other_key: rsa.RSAPrivateKey  # signs with a key the certificate does not hold
    github_key: ec.EllipticCurvePrivateKey


def make_pki(directory: Path) -> Pki:
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("keyops test CA"))
        .issuer_name(_name("keyops test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(key: Any, common: str, *, server: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False
            ).add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = issue(server_key, "127.0.0.1", server=True)
    sns_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sns_cert = issue(sns_key, "sns.amazonaws.com", server=False)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(_pem(ca_cert))
    cert_file = directory / "server.pem"
    cert_file.write_bytes(_pem(server_cert))
    key_file = directory / "server.key"
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Pki(
        ca_file=ca_file,
        server_cert_file=cert_file,
        server_key_file=key_file,
        sns_key=sns_key,
        sns_cert_pem=_pem(sns_cert),
        other_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        github_key=ec.generate_private_key(ec.SECP256R1()),
    )


def github_meta(pki: Pki) -> bytes:
    """The document GitHub serves at /meta/public_keys/secret_scanning."""
    pem = (
        pki.github_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    other_pem = other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return json.dumps(
        {
            "public_keys": [
                {
                    "key_identifier": "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c",
                    "key": other_pem,
                    "is_current": False,
                },
                {"key_identifier": GITHUB_KEY_ID, "key": pem, "is_current": True},
            ]
        }
    ).encode()


@dataclass
class LocalServer:
    """A threaded HTTP(S) server answering fixed routes and recording hits."""

    routes: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    url: str = ""

    def start(self, pki: Pki | None = None) -> LocalServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                status, body = outer.routes.get(self.path, outer.routes.get(urlsplit(self.path).path, (404, b"")))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if pki is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(pki.server_cert_file, pki.server_key_file)
            server.socket = context.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        self._server = server
        self.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class RoutingFetcher:
    """keyops' HttpFetcher against the local server, trusting the test CA."""

    def __init__(self, server: LocalServer, pki: Pki) -> None:
        self._server = server
        context = ssl.create_default_context(cafile=str(pki.ca_file))
        self._fetch = HttpFetcher(timeout=5.0, verify=context)
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        parts = urlsplit(url)
        local = self._server.url + parts.path + (f"?{parts.query}" if parts.query else "")
        return self._fetch(local)


# -- Standard Webhooks ------------------------------------------------------


def standard_delivery(
    data: dict[str, Any], *, secret: str = STANDARD_SECRET, when: datetime | None = None, msg_id: str | None = None
) -> tuple[dict[str, str], bytes]:
    when = when or datetime.now(UTC)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    body = json.dumps(
        {"type": "key.anomaly", "timestamp": when.isoformat().replace("+00:00", "Z"), "data": data}
    ).encode()
    stamp = str(int(when.timestamp()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    other = base64.b64encode(b"\x00" * 32).decode()
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        # Several signatures, as during a sender's secret rotation.
        "webhook-signature": f"v1,{other} v1,{base64.b64encode(mac).decode()}",
        "content-type": "application/json",
    }
    return headers, body


# -- Alertmanager / Grafana -------------------------------------------------


def alert_group(
    key_label: str, *, status: str = "firing", severity: str = "critical", version: str = "4"
) -> dict[str, Any]:
    """Alertmanager's documented webhook body (Grafana adds fields to it)."""
    labels = {"alertname": "KeyopsVolumeAnomaly", "severity": severity, "keyops_key": key_label, "job": "gateway"}
    return {
        "version": version,
        "groupKey": '{}:{alertname="KeyopsVolumeAnomaly"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "keyops",
        "groupLabels": {"alertname": "KeyopsVolumeAnomaly"},
        "commonLabels": {"alertname": "KeyopsVolumeAnomaly", "severity": severity},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": f"request volume of {key_label} is 12x its profile"},
                "startsAt": "2026-11-26T20:59:00.123456789Z",
                "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-26T21:10:00Z",
                "generatorURL": "http://prometheus.example:9090/graph?g0.expr=...",
                "fingerprint": "c6eadffa33fcdf37",
            }
        ],
    }


def grafana_body(key_label: str, *, status: str = "firing", severity: str = "critical") -> bytes:
    doc = alert_group(key_label, status=status, severity=severity, version="1")
    doc.update(
        {
            "orgId": 1,
            "state": "alerting" if status == "firing" else "ok",
            "title": f"[FIRING:1] KeyopsVolumeAnomaly ({key_label})",
            "message": "**Firing**\n\nValue: B=5120",
        }
    )
    doc["alerts"][0].update(
        {
            "silenceURL": "http://grafana.example:3000/alerting/silence/new",
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 5120, "C": 1},
            "valueString": "[ var='B' labels={} value=5120 ]",
        }
    )
    return json.dumps(doc).encode()


def grafana_headers(body: bytes, *, secret: str = GRAFANA_SECRET, when: datetime | None = None) -> dict[str, str]:
    stamp = str(int((when or datetime.now(UTC)).timestamp()))
    mac = hmac.new(secret.encode(), stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {
        "X-Grafana-Alerting-Signature": mac,
        "X-Grafana-Alerting-Timestamp": stamp,
        "content-type": "application/json",
    }


# -- SNS --------------------------------------------------------------------

_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


def sns_sign(doc: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "1") -> dict[str, Any]:
    names = _NOTIFICATION if doc["Type"] == "Notification" else _CONFIRMATION
    canonical = "".join(f"{n}\n{doc[n]}\n" for n in names if n in doc).encode()
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS v1 is SHA1
    doc["SignatureVersion"] = version
    doc["Signature"] = base64.b64encode(key.sign(canonical, padding.PKCS1v15(), algorithm)).decode()
    return doc


def sns_notification(message: Any, *, when: datetime | None = None, subject: str | None = "ALARM") -> dict[str, Any]:
    when = when or datetime.now(UTC)
    doc: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "SignatureVersion": "1",
        "Signature": "",
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": UNSUBSCRIBE_URL,
    }
    if subject is not None:
        doc["Subject"] = subject
    return doc


def sns_confirmation(*, when: datetime | None = None) -> dict[str, Any]:
    when = when or datetime.now(UTC)
    token = (
        "2336412f37fb687f5d51e6e241d638b05824e9e2f6713b42abaeb8607743f5ba91d34edd2b9dabe2f1616ed77c0f8801"
        "ee79911d34dca3d210c228af87bd5d9597bf0d6093a1464e03af6650e992ecf54605e020f04ad3d47796045c9f24d902e72e811a1ad59852cad453f40bddfb45"
    )
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": token,
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}",
        "Timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SignatureVersion": "1",
        "Signature": "",
        "SigningCertURL": CERT_URL,
    }


def cloudwatch_alarm(key_name: str, *, state: str = "ALARM") -> dict[str, Any]:
    """CloudWatch's alarm notification (the SNS Message), as AWS documents it."""
    return {
        "AlarmName": "keyops-volume-payments",
        "AlarmDescription": "severity=critical request volume far above the key's profile",
        "AWSAccountId": "123456789012",
        "AlarmConfigurationUpdatedTimestamp": "2026-11-20T10:00:00.000+0000",
        "NewStateValue": state,
        "NewStateReason": "Threshold Crossed: 1 out of the last 1 datapoints [5120.0 (26/11/26 20:59:00)] was "
        "greater than the threshold (1000.0) (minimum 1 datapoint for OK -> ALARM transition).",
        "StateChangeTime": "2026-11-26T21:00:00.000+0000",
        "Region": "US East (N. Virginia)",
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:keyops-volume-payments",
        "OldStateValue": "OK",
        "OKActions": [],
        "AlarmActions": [TOPIC],
        "InsufficientDataActions": [],
        "Trigger": {
            "MetricName": "Requests",
            "Namespace": "KeyOps/Usage",
            "StatisticType": "Statistic",
            "Statistic": "SUM",
            "Unit": None,
            "Dimensions": [{"value": key_name, "name": "KeyName"}],
            "Period": 60,
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1,
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 1000.0,
            "TreatMissingData": "missing",
            "EvaluateLowSampleCountPercentile": "",
        },
    }


def guardduty_finding(access_key_id: str) -> dict[str, Any]:
    """An EventBridge "GuardDuty Finding" event, as AWS documents it."""
    finding_id = "16afba5c5c43e07c9e3e5e2e544e95df"
    return {
        "version": "0",
        "id": "c8c4daa7-a20c-2f03-0070-b7393dd542ad",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": "123456789012",
        "time": "2026-11-26T21:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "schemaVersion": "2.0",
            "accountId": "123456789012",
            "region": "us-east-1",
            "partition": "aws",
            "id": finding_id,
            "arn": "arn:aws:guardduty:us-east-1:123456789012:detector/12abc34d567e8fa901bc2d34e56789f0"
            f"/finding/{finding_id}",
            "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            "resource": {
                "resourceType": "AccessKey",
                "accessKeyDetails": {
                    "accessKeyId": access_key_id,
                    "principalId": "AIDACKCEVSQ6C2EXAMPLE",
                    "userType": "IAMUser",
                    "userName": "payments-llm",
                },
            },
            "service": {"serviceName": "guardduty", "action": {"actionType": "AWS_API_CALL"}, "count": 1},
            "severity": 8,
            "createdAt": "2026-11-26T20:58:00.000Z",
            "updatedAt": "2026-11-26T20:59:00.000Z",
            "title": "Credentials for the IAM user payments-llm were used from an external IP address.",
            "description": "Credentials created exclusively for an EC2 instance were used from an external IP.",
        },
    }


# -- GitHub -----------------------------------------------------------------


def github_delivery(
    tokens: list[str], key: ec.EllipticCurvePrivateKey, key_id: str = GITHUB_KEY_ID
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        [
            {
                "token": token,
                "type": "keyops_api_key",
                "url": "https://github.com/octocat/Hello-World/blob/12345600b9cbe38a219f39a9941c9319b600c002/foo/bar.txt",
                "source": "content",
            }
            for token in tokens
        ],
        separators=(",", ":"),
    ).encode()
    signature = base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    return {
        "Github-Public-Key-Identifier": key_id,
        "Github-Public-Key-Signature": signature,
        "content-type": "application/json",
    }, body


def github_sign(body: bytes, key: ec.EllipticCurvePrivateKey) -> str:
    return base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
