"""Redaction: no issued key, token or secret survives, whatever surrounds it."""

from __future__ import annotations

import io
import logging
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from keyops import logs
from keyops.domain import keyformat
from keyops.domain.redact import bounded, redact, redact_value

_NEIGHBOURS = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
_PREFIXES = st.sampled_from(["kops_live", "kops_test", "acme", "a1_b2_c3"])


@settings(max_examples=300, deadline=None)
@given(prefix=_PREFIXES, before=_NEIGHBOURS, after=_NEIGHBOURS)
def test_an_issued_key_never_survives_redaction(prefix: str, before: str, after: str) -> None:
    key = keyformat.generate(prefix).plaintext
    out = redact(before + key + after)
    assert keyformat.secret_part(key) not in out
    assert keyformat.secret_part(key)[:20] not in out


@settings(max_examples=200, deadline=None)
@given(before=_NEIGHBOURS, cut=st.integers(min_value=0, max_value=200))
def test_truncating_after_redaction_leaves_no_rebuildable_key(before: str, cut: int) -> None:
    key = keyformat.generate().plaintext
    out = bounded(before + key + "_old", cut)
    assert keyformat.secret_part(key)[:12] not in out


def test_glued_and_url_encoded_keys_are_redacted() -> None:
    key = keyformat.generate().plaintext
    for text in (f"?k%3D{key}", f"{key}_old", f"x{key}9"):
        assert keyformat.secret_part(key) not in redact(text)


def test_tokens_and_secrets_are_redacted_and_ordinary_text_is_not() -> None:
    token = "kopt_" + "A" * 43
    aws = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    samples = [token, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "hvs.CAESIJ" + "x" * 30, f"aws_secret_access_key={aws}"]
    for sample in samples:
        assert "[redacted" in redact(sample)
    assert aws not in redact(f"AKIAIOSFODNN7EXAMPLE {aws}")
    ordinary = "sha1 " + "a" * 40 + " is a digest"
    assert redact(ordinary) == ordinary


def test_nested_values_are_redacted() -> None:
    key = keyformat.generate().plaintext
    doc = redact_value({"a": [key, {"b": (key,)}], key: 1})
    assert keyformat.secret_part(key) not in repr(doc)


def test_log_extras_and_tracebacks_are_redacted_in_both_formats() -> None:
    key = keyformat.generate().plaintext
    for fmt in ("json", "text"):
        stream = io.StringIO()
        logs.configure("DEBUG", fmt, stream)
        log = logging.getLogger("keyops.test")
        log.info("extra", extra={"ctx": {"found": [key]}})
        try:
            raise ValueError(f"bad key {key}")
        except ValueError:
            log.exception("failed")
        out = stream.getvalue()
        assert "failed" in out
        assert keyformat.secret_part(key) not in out, fmt


def test_other_libraries_and_thread_crashes_are_logged_redacted_in_the_chosen_format() -> None:
    key = keyformat.generate().plaintext
    for fmt in ("json", "text"):
        stream = io.StringIO()
        logs.configure("DEBUG", fmt, stream)
        logging.getLogger("asyncio").error("Task exception was never retrieved: %s", key)
        logging.getLogger("httpx").info("HTTP Request: POST https://hooks.slack.com/services/T0/B0/not-for-logs")

        def crash() -> None:
            raise RuntimeError(f"worker died holding {key}")

        thread = threading.Thread(target=crash, name="crasher")
        thread.start()
        thread.join()
        lines = stream.getvalue().splitlines()
        out = "\n".join(lines)
        assert "Task exception was never retrieved" in out and "uncaught exception in thread crasher" in out, out
        assert "RuntimeError" in out
        assert keyformat.secret_part(key) not in out, fmt
        assert "not-for-logs" not in out  # other libraries' INFO lines are not taken
        if fmt == "json":
            assert all(line.startswith("{") for line in lines), out
