"""The ``text`` log format keeps what the JSON format carries: the record's
fields (which destination failed, and why), redacted like everything else."""

from __future__ import annotations

import io
import logging

from keyops.domain import keyformat
from keyops.logs import configure


def test_text_lines_keep_their_fields_and_stay_redacted() -> None:
    out = io.StringIO()
    configure("INFO", "text", out)
    key = keyformat.generate().plaintext
    logging.getLogger("keyops.test").warning(
        "delivery failed",
        extra={"destination": "vault:secret/app", "error": f"connection refused ({key})", "attempt": 3},
    )
    line = out.getvalue().strip()
    assert " WARNING keyops.test: delivery failed " in line
    assert "destination=vault:secret/app" in line and "attempt=3" in line
    assert 'error="connection refused (' in line
    assert key not in line
    assert "\n" not in line
