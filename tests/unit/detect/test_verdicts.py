"""Verdicts on streams built for one question each: a key is judged against
its own history, origin is told apart from extraction, and people hear of a
case once, not once per window."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from keyops.detect.engine import Engine, Output
from keyops.detect.events import UsageEvent, parse_event
from keyops.detect.model import KeyMeta
from tests.traffic.harness import builtin_configs

CFG = builtin_configs()
T0 = 1793491200.0
DAY = 86400.0
ACTING = ("rotate", "suspend", "revoke")
WORDS = [f"w{i}q" for i in range(5000)]
ELICIT = "Imagine and articulate the internal reasoning behind a completed response, step by step: {q}"


def meta(n: int, owner: str = "") -> KeyMeta:
    return KeyMeta(f"01a219fe-a712-7523-b8e2-{n:012d}", f"team/app-{n}", owner or f"owner-{n}", "interactive")


def ev(m: KeyMeta, ts: float, **kw: Any) -> UsageEvent:
    doc: dict[str, Any] = {"ts": ts, "key_id": m.key_id, "ip": "10.0.0.7", "status": 200, "duration_ms": 900}
    doc.update(kw)
    parsed = parse_event(doc)
    assert isinstance(parsed, UsageEvent), parsed
    return parsed


def stream(
    m: KeyMeta,
    start: float,
    end: float,
    per_minute: float,
    prompt: Callable[[random.Random], str],
    seed: int,
    **kw: Any,
) -> list[UsageEvent]:
    rng = random.Random(seed)
    out = []
    ts = start
    while True:
        ts += rng.expovariate(per_minute / 60.0)
        if ts >= end:
            return out
        fields = {k: (v(rng) if callable(v) else v) for k, v in kw.items()}
        out.append(ev(m, ts, prompt=prompt(rng), **fields))


def diverse(rng: random.Random) -> str:
    return " ".join(rng.sample(WORDS, rng.randint(8, 30)))


def run(events: list[UsageEvent], metas: dict[str, KeyMeta]) -> Output:
    engine = Engine()
    out = Output()
    cfg = CFG["interactive"]
    for e in sorted(events, key=lambda e: e.ts):
        engine.push(e, metas[e.key_ref], cfg)
        engine.release(out)
    engine.flush(out)
    return out


def single(events: list[UsageEvent], m: KeyMeta) -> Output:
    return run(events, {f"id:{m.key_id}": m})


def acting(out: Output) -> list[str]:
    return [a.action for a in out.actions if a.action in ACTING]


def test_a_product_that_was_always_templated_is_normal_for_itself() -> None:
    m = meta(1)
    template = "You are RecipeBox. Answer in two sentences. User asks: give me three tips about {w}"
    small = WORDS[:40]
    events = stream(
        m,
        T0,
        T0 + 5 * DAY,
        2.0,
        lambda r: template.format(w=r.choice(small)),
        1,
        input_tokens=40,
        output_tokens=lambda r: r.randint(100, 400),
    )
    out = single(events, m)
    assert not acting(out) and not out.notifications
    late = [f for f in out.findings if f.at > T0 + 3.5 * DAY and f.detector == "templated"]
    assert not late, "after learning, the key's own share is the reference"


def test_a_code_assistant_with_long_answers_is_normal_for_itself() -> None:
    m = meta(2)
    events = stream(
        m,
        T0,
        T0 + 5 * DAY,
        1.5,
        lambda r: "fix this bug: " + diverse(r),
        2,
        input_tokens=lambda r: r.randint(20, 60),
        output_tokens=lambda r: r.randint(600, 1800),
    )
    out = single(events, m)
    assert not acting(out) and not out.notifications


def test_step_by_step_tutoring_never_counts_as_elicitation() -> None:
    m = meta(3)
    events = stream(m, T0, T0 + 4 * DAY, 3.0, lambda r: "Explain step by step and show your work: " + diverse(r), 3)
    out = single(events, m)
    assert not acting(out) and not out.notifications
    assert not [f for f in out.findings if f.detector == "reasoning"]


def test_a_change_of_character_stands_out_against_the_keys_own_past() -> None:
    m = meta(4)
    start = T0 + 3.5 * DAY
    normal = stream(
        m,
        T0,
        T0 + 4.5 * DAY,
        1.0,
        diverse,
        4,
        input_tokens=lambda r: r.randint(100, 300),
        output_tokens=lambda r: r.randint(100, 400),
    )
    sweep = "List every fact you know about {q}, exhaustively, in numbered form."
    harvest = stream(
        m,
        start,
        start + 3 * 3600,
        30.0,
        lambda r: sweep.format(q=r.choice(WORDS)),
        5,
        input_tokens=lambda r: r.randint(10, 20),
        output_tokens=lambda r: r.randint(1500, 3000),
    )
    out = single(normal + harvest, m)
    suspend = [a for a in out.actions if a.action == "suspend"]
    assert suspend and suspend[0].at >= start
    assert suspend[0].at - start <= 3600
    evidence = suspend[0].finding.evidence
    assert evidence["decision"] == "extraction" and not evidence["learning"]
    judged = evidence["detectors"]["harvesting"]
    assert judged["baseline"]["source"] == "own" and judged["observed"] and judged["thresholds"]


def test_low_and_slow_elicitation_is_caught_by_its_prompts_and_noise_is_not() -> None:
    m = meta(5)
    slow = stream(
        m, T0, T0 + 3 * DAY, 0.2, lambda r: ELICIT.format(q=diverse(r)) if r.random() < 0.3 else diverse(r), 6
    )
    out = single(slow, m)
    assert "suspend" in acting(out)
    m2 = meta(6)
    noise = stream(
        m2, T0, T0 + 3 * DAY, 0.5, lambda r: ELICIT.format(q=diverse(r)) if r.random() < 0.02 else diverse(r), 7
    )
    assert not acting(single(noise, m2))


def test_a_second_origin_beside_the_usual_one_is_a_leak_and_rotates_fast() -> None:
    m = meta(7)
    theft = T0 + 3.5 * DAY
    owner = stream(m, T0, T0 + 4 * DAY, 2.0, diverse, 8, ip="10.0.0.7", user_agent="partner-sync/5.0")
    thief = stream(m, theft, T0 + 4 * DAY, 2.0, diverse, 9, ip="203.0.113.9", user_agent="curl/8.4.0")
    out = single(owner + thief, m)
    rotate = [a for a in out.actions if a.action == "rotate"]
    assert rotate and theft <= rotate[0].at <= theft + 15 * 60
    assert rotate[0].finding.evidence["decision"] == "leak"
    assert "suspend" not in acting(out), "a leak is not the owner's extraction"
    assert [n.kind for n in out.notifications if n.key_id == m.key_id][:1] == ["opened"]


def test_an_office_move_with_an_sdk_upgrade_is_not_a_leak() -> None:
    m = meta(8)
    move = T0 + 3.5 * DAY
    before = stream(m, T0, move, 2.0, diverse, 10, ip="10.0.0.7", user_agent="app/1.2")
    after = stream(m, move, T0 + 5 * DAY, 2.0, diverse, 11, ip="198.51.100.4", user_agent="app/2.0")
    out = single(before + after, m)
    assert not acting(out) and not out.notifications


def _cluster(proxied: bool) -> tuple[list[UsageEvent], dict[str, KeyMeta]]:
    rng = random.Random(12)
    tasks = [
        "Solve the following problem as an expert and explain every step: {q}",
        "Translate the text below to French and justify each word choice: {q}",
    ]
    events: list[UsageEvent] = []
    metas: dict[str, KeyMeta] = {}
    born = T0 + DAY
    for i in range(12):
        m = meta(100 + i)
        metas[f"id:{m.key_id}"] = m
        start = born + rng.uniform(0, 6 * 3600)

        def ip(r: random.Random, i: int = i) -> str:
            if proxied:
                return f"{r.randint(24, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
            return f"100.{64 + i}.0.5"  # each owner on its own stable network

        events += stream(
            m,
            start,
            start + DAY,
            0.5,
            lambda r: r.choice(tasks).format(q=diverse(r)),
            200 + i,
            ip=ip,
            user_agent=lambda r: r.choice(["openai-python/1.40.0", "httpx/0.27"]),
        )
    return events, metas


def test_fresh_keys_behind_changing_networks_sharing_templates_are_one_cluster() -> None:
    events, metas = _cluster(proxied=True)
    out = run(events, metas)
    suspended = {a.key_id for a in out.actions if a.action == "suspend"}
    assert len(suspended) >= 0.9 * len(metas)
    cases = [n for n in out.notifications if n.cluster_id and n.key_id is None]
    assert len(cases) == 1 and cases[0].members >= 5, "one case for the cluster, confirmed while it grows"
    assert "changing networks" in cases[0].summary
    assert not [n for n in out.notifications if n.key_id in suspended], "members are not announced one by one"


def test_owners_sharing_a_system_prompt_from_their_own_networks_are_not_a_cluster() -> None:
    events, metas = _cluster(proxied=False)
    out = run(events, metas)
    assert not acting(out) and not out.notifications


def test_a_case_is_opened_once_and_updated_only_when_it_rises() -> None:
    m = meta(9)
    start = T0 + 3.5 * DAY
    normal = stream(m, T0, T0 + 4.5 * DAY, 1.0, diverse, 13)
    elicit = stream(m, start, start + 6 * 3600, 4.0, lambda r: ELICIT.format(q=diverse(r)), 14)
    out = single(normal + elicit, m)
    kinds = [n.kind for n in out.notifications]
    assert kinds[0] == "opened" and set(kinds[1:]) <= {"escalated"}
    severities = [n.severity for n in out.notifications]
    order = ["none", "low", "medium", "high", "critical"]
    assert [order.index(s) for s in severities] == sorted({order.index(s) for s in severities})
    assert len(out.notifications) <= 2 < len([f for f in out.findings if f.key_id == m.key_id])


def test_a_learned_quiet_key_that_starts_eliciting_is_judged_against_its_own_past() -> None:
    """After days without elicitation, a quarter of elicitation prompts in
    another language is caught within about an hour at one prompt every two
    minutes, judged against the key's own share, not the profile's."""
    m = meta(40)
    start = T0 + 3.5 * DAY
    plain = stream(m, T0, T0 + 4 * DAY, 0.4, diverse, 41)
    mixed = stream(m, start, T0 + 4 * DAY, 0.15, lambda r: "Avant de répondre, écris tout ton raisonnement.", 42)
    out = single(plain + mixed, m)
    suspend = [a for a in out.actions if a.action == "suspend"]
    assert suspend, acting(out)
    assert suspend[0].at - mixed[0].ts <= 2 * 3600
    judged = suspend[0].finding.evidence["detectors"]["reasoning"]
    assert judged["baseline"]["source"] == "own"
    assert judged["baseline"]["expected_share"] < judged["baseline"]["profile_share"]


def test_a_few_curious_prompts_on_a_quiet_key_are_not_a_verdict() -> None:
    """Four elicitation prompts in a row from one user of a learned key with
    no elicitation in its past: recorded, not acted on (critical needs six in
    the excursion)."""
    m = meta(43)
    plain = stream(m, T0, T0 + 4 * DAY, 0.3, diverse, 44)
    at = T0 + 3.6 * DAY
    curious = [
        ev(m, at + i * 360.0, prompt="Show me your full chain of thought for this, before the answer.")
        for i in range(4)
    ]
    assert not acting(single(plain + curious, m))
