"""Validation patterns match whole strings: ``$`` also matches before a
trailing newline, so ``'payments/prod-llm\\n'`` once passed as a second key
that looks just like the first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyops.domain.keyformat import checksum, generate, is_well_formed, secret_part, validate_prefix
from keyops.domain.names import validate_key_name, validate_owner, validate_profile_name
from keyops.domain.windows import parse_window
from keyops.errors import InvalidInputError
from keyops.lifecycle.tokens import NAME_RE as TOKEN_NAME_RE
from keyops.lifecycle.tokens import parse_scopes
from keyops.stores.base import parse_destination

_CONTROL = [chr(c) for c in range(32)] + ["\x7f"]


def _has_control(text: str) -> bool:
    return any(c in _CONTROL for c in text)


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (validate_key_name, "payments/prod-llm\n"),
        (validate_owner, "payments-team\n"),
        (validate_profile_name, "interactive\n"),
        (validate_prefix, "kops_live\n"),
        (parse_destination, "vault:secret/payments\n"),
        (parse_destination, "aws-sm:payments/prod\n"),
    ],
)
def test_a_trailing_newline_is_refused(check: object, value: str) -> None:
    with pytest.raises(InvalidInputError):
        check(value)  # type: ignore[operator]


def test_a_key_with_a_newline_in_its_prefix_is_not_well_formed() -> None:
    random_part = secret_part(generate("kops_live").plaintext)
    body = f"kops_live\n_{random_part}"
    assert is_well_formed(f"kops_live_{random_part}_{checksum(f'kops_live_{random_part}')}")
    assert not is_well_formed(f"{body}_{checksum(body)}")


def test_token_names_and_windows_match_whole_strings() -> None:
    assert TOKEN_NAME_RE.fullmatch("gateway")
    assert not TOKEN_NAME_RE.fullmatch("gateway\n")
    with pytest.raises(ValueError, match="not a rotation window"):
        parse_window("Tue-Thu 09:00-16:00 UTC\nMon 00:00-23:59")


_NAME_CHARS = st.sampled_from([*list("abz09._-/"), "\n", "\r", "\t", "\x00", "\x1b", "\x7f", " "])


@given(st.text(_NAME_CHARS, min_size=1, max_size=40))
def test_no_accepted_key_name_holds_a_control_character(name: str) -> None:
    try:
        validate_key_name(name)
    except InvalidInputError:
        return
    assert not _has_control(name)


@given(st.text(st.sampled_from(list("aZ09._@-") + _CONTROL[:12] + ["\x7f"]), min_size=1, max_size=20))
def test_no_accepted_owner_holds_a_control_character(owner: str) -> None:
    try:
        validate_owner(owner)
    except InvalidInputError:
        return
    assert not _has_control(owner)


@given(st.text(st.sampled_from([*list("az09_"), "\n", "\r", "\x00"]), min_size=1, max_size=12), st.booleans())
def test_no_well_formed_key_holds_a_control_character(prefix: str, newline_at_end: bool) -> None:
    try:
        validate_prefix(prefix)
    except InvalidInputError:
        return
    key = generate(prefix).plaintext + ("\n" if newline_at_end else "")
    if is_well_formed(key):
        assert not _has_control(key)


@given(st.text(st.sampled_from([*list("verifyusagdmnlt:*"), "\n", "\r"]), min_size=1, max_size=14))
def test_no_accepted_scope_holds_a_control_character(scopes: str) -> None:
    try:
        accepted = parse_scopes([scopes])
    except InvalidInputError:
        return
    assert not any(_has_control(s) for s in accepted)


@given(st.text(st.sampled_from([*list("az09._-"), "\n", "\r", "\x00"]), min_size=1, max_size=20))
def test_no_accepted_token_name_holds_a_control_character(name: str) -> None:
    if TOKEN_NAME_RE.fullmatch(name):
        assert not _has_control(name)
