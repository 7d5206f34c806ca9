"""The maintained pattern set for reasoning elicitation (English and Chinese),
joined with the multilingual cue lexicon of ``keyops.detect.cues``.

Two tiers, because the difference matters:

* ``STRONG``: prompts built to make a model write out its *internal*
  reasoning as data ("imagine and articulate the internal reasoning behind a
  completed response and write it out step by step", "输出你完整的思维链").
  That is what distillation pipelines ask for; a product's users rarely do.
* ``WEAK``: ordinary requests for a worked answer ("explain step by step",
  "show your work", "请一步一步解释"). A tutoring product sends these all day;
  they are counted for evidence but never judged as elicitation on their own.

Each pattern has a name so evidence can say which one matched, and tests in
``tests/unit/detect/test_patterns.py`` hold positive and negative examples for
every pattern. To add one: add it here with a name, add examples there.

Matching runs on lowercased text, and only after a cheap substring prefilter
(``_STRONG_TRIGGERS``), so a prompt with none of the trigger words costs a few
``in`` checks, not a regex scan.
"""

from __future__ import annotations

import re

from keyops.detect import cues

# (name, regex). English patterns are matched against lowercased text.
STRONG: tuple[tuple[str, str], ...] = (
    (
        "en.internal-reasoning",
        r"\b(internal|inner|hidden|private|latent|underlying)\s+(reasoning|thoughts?|thinking|monologue)",
    ),
    ("en.chain-of-thought", r"\b(full|complete|entire|raw|detailed|your|the)\s+chain[\s-]of[\s-]thoughts?\b"),
    ("en.reasoning-trace", r"\breasoning\s+(traces?|tokens|transcripts?)\b"),
    (
        "en.reasoning-behind-response",
        r"\b(reasoning|thought process|thinking)\s+(that\s+)?(behind|led to|produced)\s+(a|the|this|that|each)\s+"
        r"(completed|final|given|finished|following|model'?s?)?\s*(response|answer|output|completion)",
    ),
    (
        "en.articulate-reasoning",
        r"\b(articulate|reconstruct|verbalize|transcribe|dump|reproduce|reveal|expose)\b[^.?!]{0,60}"
        r"\b(reasoning|thought process|thinking process|thoughts)\b",
    ),
    (
        "en.write-out-thinking",
        r"\b(write|print|output|spell)\s+out\s+(all\s+)?(of\s+)?(your|its|the model'?s?)\s+"
        r"(full\s+|complete\s+|entire\s+|raw\s+)?(reasoning|thinking|thought process|thoughts)\b",
    ),
    ("en.think-tags", r"<\s*(think|thinking|reasoning|scratchpad)\s*>"),
    ("zh.internal-reasoning", r"(内部|内在|内心|隐藏|隐含|潜在)的?(推理|思考|思维|独白)"),
    ("zh.chain-of-thought", r"思维链|思考链|推理链"),
    ("zh.full-thinking", r"(完整|全部|原始|详尽)的?(思考|推理|思维)(过程|步骤|轨迹)"),
    ("zh.reconstruct-reasoning", r"(还原|重建|重现|复述|想象|模拟)[^。？！]{0,20}(推理|思考|思维)(过程|步骤)?"),
    ("zh.reasoning-behind-answer", r"(回答|答案|回复|响应)(背后|之前)的?(推理|思考|思维)"),
)

WEAK: tuple[tuple[str, str], ...] = (
    ("en.step-by-step", r"\bstep[\s-]by[\s-]step\b"),
    ("en.show-work", r"\bshow\s+(your|all|the)\s+(work|steps|working)\b"),
    ("en.walk-through", r"\bwalk\s+(me|us)\s+through\b"),
    ("en.explain-reasoning", r"\bexplain\s+(your|the)\s+(reasoning|steps|logic)\b"),
    ("en.think-carefully", r"\b(think|let'?s think)\s+(carefully|it through|about it)\b"),
    ("zh.step-by-step", r"一步一步|一步步|逐步|分步"),
    ("zh.explain-steps", r"(解题|计算|推导|推理)(步骤|过程)"),
    ("zh.explain-why", r"(详细|仔细)(解释|说明|讲解)"),
)

# A literal every match of the tier must contain: one ``in`` check per
# literal decides whether the tier's regexes run at all (most prompts: no).
_STRONG_LITERALS = ("reason", "thought", "think", "monologue", "<", "推理", "思", "独白")
_WEAK_LITERALS = ("step", "work", "walk", "explain", "think", "步", "过程", "解释", "说明", "讲解")
_STRONG_ASCII = tuple(t for t in _STRONG_LITERALS if t.isascii())
_WEAK_ASCII = tuple(t for t in _WEAK_LITERALS if t.isascii())

_STRONG_NAMED = tuple((name, re.compile(rx)) for name, rx in STRONG)
_WEAK_NAMED = tuple((name, re.compile(rx)) for name, rx in WEAK)

FLAG_STRONG = 1
FLAG_WEAK = 2


def _any(lowered: str, named: tuple[tuple[str, re.Pattern[str]], ...]) -> bool:
    # Separate searches beat one big alternation: each pattern starts with a
    # distinctive literal that the regex engine can scan for quickly.
    return any(rx.search(lowered) for _, rx in named)


def reasoning_flags(lowered: str) -> int:
    """Bit flags (``FLAG_STRONG``, ``FLAG_WEAK``) for lowercased prompt text.

    Strong: one of the maintained ``STRONG`` phrasings, or a multilingual cue
    score at or above ``cues.STRONG_SCORE`` (reasoning named as an object and
    asked for exposed, complete or before the answer; ``keyops.detect.cues``).
    Weak: a ``WEAK`` phrasing or a request for steps in any cue language."""
    flags = 0
    plain = lowered.isascii()  # O(1); an ASCII prompt cannot hold a CJK literal
    text = lowered if plain else cues.normalise(lowered)
    contains = text.__contains__  # map() keeps the prefilter a C-level loop
    if cues.may_name_reasoning(text) and (
        cues.score(text) >= cues.STRONG_SCORE
        or (any(map(contains, _STRONG_ASCII if plain else _STRONG_LITERALS)) and _any(text, _STRONG_NAMED))
    ):
        flags |= FLAG_STRONG
    if (any(map(contains, _WEAK_ASCII if plain else _WEAK_LITERALS)) and _any(text, _WEAK_NAMED)) or (
        cues.asks_for_steps(text)
    ):
        flags |= FLAG_WEAK
    return flags


def matching_patterns(text: str) -> list[str]:
    """Names of every pattern and cue class that matches ``text`` (for
    evidence and tests): ``en.chain-of-thought``, ``cue.R1.ja``, ..."""
    lowered = cues.normalise(text.lower())
    names = [name for name, rx in _STRONG_NAMED if rx.search(lowered)]
    names += [name for name, rx in _WEAK_NAMED if rx.search(lowered)]
    names += [f"cue.{cls}.{lang}" for cls, langs in cues.classes(text).items() for lang in langs]
    return names
