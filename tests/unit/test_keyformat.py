"""The native key format: generation, offline checksum rejection, scanner regex."""

from __future__ import annotations

import math
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from keyops.domain import keyformat

KEY = keyformat.generate()


def test_generated_key_has_prefix_random_and_checksum() -> None:
    key = keyformat.generate("kops_test")
    prefix, random_part, check = key.plaintext.rsplit("_", 2)
    assert prefix == "kops_test"
    assert len(random_part) == keyformat.RANDOM_CHARS
    assert len(check) == keyformat.CHECKSUM_CHARS
    assert keyformat.is_well_formed(key.plaintext)
    # at least 192 bits of randomness fit in the random part
    assert keyformat.RANDOM_CHARS * math.log2(62) >= 192
    assert keyformat.RANDOM_BYTES * 8 >= 192


def test_hash_and_display_prefix_are_not_the_secret() -> None:
    key = keyformat.generate()
    assert key.secret_hash == keyformat.hash_key(key.plaintext)
    assert len(key.secret_hash) == 64
    assert keyformat.secret_part(key.plaintext) not in key.display_prefix
    assert key.display_prefix.startswith("kops_live_")
    assert key.plaintext not in repr(key) and key.plaintext not in str(key)


def test_keys_are_unique() -> None:
    keys = {keyformat.generate().plaintext for _ in range(2000)}
    assert len(keys) == 2000


def test_scanner_regex_matches_keys_and_not_lookalikes() -> None:
    pattern = re.compile(keyformat.SCANNER_REGEX)
    text = f"config: API_KEY={KEY.plaintext} # prod"
    assert pattern.search(text).group(0) == KEY.plaintext  # type: ignore[union-attr]
    assert pattern.search("kops_live_short_abcdef") is None


@given(st.data())
@settings(max_examples=600)
def test_every_single_character_change_is_rejected(data: st.DataObject) -> None:
    key = keyformat.generate(data.draw(st.sampled_from(["kops_live", "kops_test", "acme"])))
    text = key.plaintext
    index = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != text[index]))
    mutated = text[:index] + replacement + text[index + 1 :]
    assert not keyformat.is_well_formed(mutated)


@given(st.data())
@settings(max_examples=200)
def test_deleted_or_inserted_characters_are_rejected(data: st.DataObject) -> None:
    text = keyformat.generate().plaintext
    index = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    assert not keyformat.is_well_formed(text[:index] + text[index + 1 :])
    extra = data.draw(st.sampled_from(keyformat.BASE62))
    assert not keyformat.is_well_formed(text[:index] + extra + text[index:])


@given(st.text(max_size=200))
def test_arbitrary_text_is_never_accepted_by_accident(text: str) -> None:
    # A random string passes the checksum with probability ~2**-32.
    assert not keyformat.is_well_formed(text) or re.fullmatch(keyformat.SCANNER_REGEX, text)


def test_base62_round_trip() -> None:
    for value in (0, 1, 61, 62, 2**32 - 1, 2**192 - 1):
        assert keyformat.decode_base62(keyformat.encode_base62(value, 33)) == value


def test_invalid_prefixes_are_refused() -> None:
    import pytest

    from keyops.errors import InvalidInputError

    for bad in ("", "Kops", "kops-live", "1kops", "kops__live", "x" * 40):
        with pytest.raises(InvalidInputError):
            keyformat.generate(bad)
