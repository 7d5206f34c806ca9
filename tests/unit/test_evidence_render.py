"""Evidence as lines for people: the structured shape and the flat fallback."""

from __future__ import annotations

from keyops.cli.evidence import cut, evidence_lines, key_lines

DETECTOR = {
    "summary": "31 of 40 prompts ask for the internal reasoning",
    "baseline": {"share_median": 0.0213, "windows": 288},
    "observed": {"share": 0.775},
    "thresholds": {"high": 0.3},
    "samples": ["Imagine and articulate\nthe reasoning " + "x" * 200, "short one"],
    "window_start": "2026-11-01T00:00:00.000Z",
}


def test_a_combined_finding_renders_each_detector_as_a_block() -> None:
    combined = {"profile": "chat", "levels": {"reasoning": "high"}, "decision": "suspend"}
    lines = evidence_lines({**combined, "detectors": {"reasoning": DETECTOR}}, width=60)
    assert lines[:3] == ["profile: chat", "levels: reasoning=high", "decision: suspend"]
    assert lines[3] == "reasoning"
    assert "  judged against: share_median=0.0213, windows=288" in lines
    assert "  observed: share=0.775" in lines and "  thresholds: high=0.3" in lines
    samples = lines[lines.index("  samples:") + 1 :]
    assert samples[0].startswith("    Imagine and articulate the reasoning x") and samples[0].endswith("…")
    assert samples[1] == "    short one"
    assert lines[-1] == "  window_start: 2026-11-01T00:00:00.000Z"
    assert all(len(line) <= 60 for line in lines)


def test_old_flat_evidence_is_listed_name_value() -> None:
    lines = evidence_lines({"peak_in_flight": 15, "limit": 8, "ratio": 30.0, "extra": {"a": 1}, "ok": True})
    assert lines == ["peak_in_flight: 15", "limit: 8", "ratio: 30", 'extra: {"a":1}', "ok: yes"]


def test_key_lines_say_what_was_observed_against_what() -> None:
    lines = key_lines({"detectors": {"reasoning": DETECTOR, "volume": {"summary": "busy"}}})
    assert lines == [
        "reasoning: 31 of 40 prompts ask for the internal reasoning",
        "  observed share=0.775 vs share_median=0.0213, windows=288",
        "volume: busy",
    ]


def test_cut_keeps_indentation_and_bounds_width() -> None:
    assert cut("    a  b\nc", 80) == "    a b c"
    assert cut("x" * 100, 10) == "x" * 9 + "…"
