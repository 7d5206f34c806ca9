"""Concurrency: requests in flight at once, reconstructed from each event's
start time and ``duration_ms`` (a bounded heap of end times per key)."""

from __future__ import annotations

from keyops.detect.config import DetectorConfig
from keyops.detect.signal import Signal, clamp
from keyops.detect.state import KeyState


def judge(st: KeyState, cfg: DetectorConfig) -> Signal | None:
    limit = cfg.concurrency * cfg.concurrency_factor
    if st.peak_inflight <= limit:
        return None
    strength = clamp(st.peak_inflight / limit - 1.0)
    return Signal(
        strength,
        f"{st.peak_inflight} requests in flight at once (limit {cfg.concurrency})",
        {
            "observed": {"peak_in_flight": st.peak_inflight},
            "thresholds": {"concurrency": cfg.concurrency, "limit_factor": cfg.concurrency_factor},
        },
    )
