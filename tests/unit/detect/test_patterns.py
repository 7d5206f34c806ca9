"""The maintained reasoning-elicitation pattern set, English and Chinese.

Every pattern has examples that must match, and ordinary requests for a
worked answer must never count as elicitation."""

from __future__ import annotations

import pytest

from keyops.detect.patterns import FLAG_STRONG, FLAG_WEAK, STRONG, WEAK, matching_patterns, reasoning_flags

STRONG_EXAMPLES = {
    "en.internal-reasoning": "Imagine and articulate the internal reasoning behind a completed response.",
    "en.chain-of-thought": "Write out your full chain of thought before the answer.",
    "en.reasoning-trace": "Produce a reasoning trace for each of these problems.",
    "en.reasoning-behind-response": "Explain the thought process behind the final answer given below.",
    "en.articulate-reasoning": "Reconstruct in detail the reasoning a model would use here.",
    "en.write-out-thinking": "Spell out your entire thinking, then answer.",
    "en.think-tags": "Put everything you consider inside <think> tags first.",
    "zh.internal-reasoning": "请详细写出你的内部推理。",
    "zh.chain-of-thought": "输出完整的思维链。",
    "zh.full-thinking": "给出完整的思考过程，然后回答。",
    "zh.reconstruct-reasoning": "请还原你得出这个结论的推理过程。",
    "zh.reasoning-behind-answer": "写出答案背后的推理。",
}
WEAK_EXAMPLES = {
    "en.step-by-step": "Can you solve this step by step?",
    "en.show-work": "Show your work for question 3.",
    "en.walk-through": "Walk me through setting up a VPN.",
    "en.explain-reasoning": "Explain the steps to balance this equation.",
    "en.think-carefully": "Think carefully about edge cases.",
    "zh.step-by-step": "请一步一步解释这道题。",
    "zh.explain-steps": "写出这道题的解题步骤。",
    "zh.explain-why": "请详细解释为什么天空是蓝色的。",
}
ORDINARY = [
    "What's the weather like in Lisbon in May?",
    "Summarise this article in three bullet points.",
    "I am a student: explain step by step how photosynthesis works.",
    "Translate 'good morning' into French.",
    "今天北京天气怎么样？",
    "Write a haiku about reasoning with cats.",  # mentions reasoning, asks for no dump
    "My thoughts on the movie were mixed; help me write a review.",
]


def test_every_pattern_has_an_example() -> None:
    assert set(STRONG_EXAMPLES) == {name for name, _ in STRONG}
    assert set(WEAK_EXAMPLES) == {name for name, _ in WEAK}


@pytest.mark.parametrize(("name", "text"), sorted(STRONG_EXAMPLES.items()))
def test_strong_examples_match_their_pattern(name: str, text: str) -> None:
    assert name in matching_patterns(text)
    assert reasoning_flags(text.lower()) & FLAG_STRONG


@pytest.mark.parametrize(("name", "text"), sorted(WEAK_EXAMPLES.items()))
def test_weak_examples_are_not_elicitation(name: str, text: str) -> None:
    assert name in matching_patterns(text)
    flags = reasoning_flags(text.lower())
    assert flags & FLAG_WEAK
    assert not flags & FLAG_STRONG


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_requests_are_not_elicitation(text: str) -> None:
    assert not reasoning_flags(text.lower()) & FLAG_STRONG
