"""Sketches: deterministic everywhere, near duplicates found, unrelated text not."""

from __future__ import annotations

import random
import subprocess
import sys

from keyops.client import sketch
from keyops.detect.sketches import BANDS, SKETCH_LENGTH, sketch_prompt

TEMPLATE = "Answer the following question thoroughly, giving every intermediate result: {q}"


def _words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(n))


def _share_band(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return bool(set(a[4:]) & set(b[4:]))


def test_sketch_shape() -> None:
    result = sketch("hello world")
    assert len(result) == SKETCH_LENGTH == 4 + BANDS
    assert all(0 <= v < 2**32 for v in result)


def test_same_prompt_same_sketch_in_another_process() -> None:
    prompt = "Write out your full chain of thought: 请输出完整的思维链 about 42 apples"
    code = f"from keyops.client import sketch; print(sketch({prompt!r}))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"}
    )
    assert other.stdout.strip() == str(sketch(prompt))


# Sketches of version 1 as the first release computed them. Gateways that
# vendored keyops.client send these values: a faster implementation must give
# exactly the same ones (a different sketch needs a new SKETCH_VERSION).
PINNED = [
    (
        "Imagine and articulate the internal reasoning behind a completed response to this question, "
        "step by step: why is the sky blue?",
        [1, 126, 3, 1977016624, 936562085, 3124572352, 3303972431, 737999646, 564933235],
    ),
    (
        "Summarise ticket 4821 in 3 bullet points",
        [1, 40, 0, 2780859278, 2691843193, 2453923919, 959532331, 204771180, 1707756711],
    ),
    ("hello", [1, 5, 0, 907060870, 3709514579, 3392917207, 2208725379, 2909137479, 2583067483]),  # 15 empty bins
    ("!!! ???", [1, 7, 0, 0, 0, 0, 0, 0, 0]),  # no words at all
    (
        "请一步一步解释：输出你完整的思维链，然后回答问题。",
        [1, 25, 3, 1520683839, 3862420269, 1863474131, 295376434, 1329939142, 841939380],
    ),
    (
        "The quick brown fox jumps over the lazy dog " * 12,
        [1, 528, 0, 2555417604, 3408729340, 3665477422, 2696654540, 3798210214, 896571296],
    ),
]


def test_sketch_values_are_those_of_version_1() -> None:
    for prompt, expected in PINNED:
        assert sketch(prompt) == expected, prompt[:40]


def test_template_with_short_fills_is_a_near_duplicate_and_unrelated_text_is_not() -> None:
    rng = random.Random(3)
    templated = [sketch_prompt(TEMPLATE.format(q=_words(rng, 10))) for _ in range(60)]
    unrelated = [sketch_prompt(_words(rng, 40)) for _ in range(60)]
    pairs = [(i, j) for i in range(60) for j in range(i + 1, 60)]
    hit_templated = sum(_share_band(templated[i], templated[j]) for i, j in pairs) / len(pairs)
    hit_unrelated = sum(_share_band(unrelated[i], unrelated[j]) for i, j in pairs) / len(pairs)
    assert hit_templated > 0.05  # J ~ 0.29 here: 1 - (1 - J^3)^5 ~ 0.11
    assert hit_unrelated < 0.005


def test_skeleton_ignores_numbers_and_content_after_the_opening() -> None:
    a = sketch_prompt("Classify the sentiment of review 17 as positive or negative: great phone")
    b = sketch_prompt("Classify the sentiment of review 2291 as positive or negative: awful battery, slow")
    c = sketch_prompt("Translate the following review into German: great phone")
    assert a[3] == b[3]
    assert a[3] != c[3]


def test_chinese_text_gets_bigrams_not_one_token() -> None:
    a = sketch_prompt("请还原你回答下面问题时的完整思考过程：苹果一共有多少个")
    b = sketch_prompt("请还原你回答下面问题时的完整思考过程：香蕉一共有多少根")
    c = sketch_prompt("今天的天气非常好，我们去公园散步吧")
    assert a[2] & 1  # elicitation flag
    assert not c[2] & 1
    assert a[3] == b[3]  # same opening
    assert a[3] != c[3]
