"""Plain tables and short ids: what the CLI prints at a given width."""

from __future__ import annotations

from keyops.cli import table
from keyops.domain.abbrev import abbreviate, abbreviation_length

COLUMNS = ["name", "owner", "state", "profile", "policy", "version", "prefix", "next rotation", "last used"]
ROW = [
    "payments/prod-llm",
    "payments-team",
    "active",
    "interactive",
    "standard",
    "1",
    "kops_live_3fQx",
    "2027-03-03 22:16:47",
    "-",
]


def words(lines: list[str]) -> set[str]:
    return {w.rstrip(":") for line in lines for w in line.split()}


def test_a_table_that_fits_is_one_line_per_row() -> None:
    header, body = table.render(COLUMNS, [ROW], 200)
    assert header.split() == " ".join(COLUMNS).split()
    assert body[0].split() == " ".join(ROW).split()
    assert len(body) == 1


def test_at_80_columns_whole_columns_fold_and_no_word_is_split() -> None:
    header, body = table.render(COLUMNS, [ROW, ROW], 80)
    lines = [header, *body]
    assert all(len(line) <= 80 for line in lines), lines
    # every header and every value is still there, whole
    for cell in [*COLUMNS, *ROW]:
        for word in cell.split():
            assert word in words(lines), (word, lines)
    # the folded columns are labelled on indented lines under their row
    assert body[1].startswith("    ") and "next rotation: 2027-03-03 22:16:47" in body[1]
    assert body[2] == body[0]


def test_a_long_folded_value_wraps_at_spaces() -> None:
    summary = "the key's output per request rose far above its own baseline for six windows in a row"
    header, body = table.render(["id", "summary"], [["01a23d35", summary]], 40)
    assert all(len(line) <= 40 for line in [header, *body])
    assert words(body) >= set(summary.split())


def test_short_ids_tell_the_listed_ids_apart() -> None:
    ids = [
        "01a23d35-ea31-7ea6-8784-e5b9ac993ae3",
        "01a23d35-ff80-74c7-8580-7fbbc0cec08a",
        "01a23d36-1515-7055-b05c-c80d18267bb9",
    ]
    short = abbreviate(ids)
    assert short == {ids[0]: "01a23d35-e", ids[1]: "01a23d35-f", ids[2]: "01a23d36-1"}
    assert len(set(short.values())) == 3
    # never fewer than 8 characters, and never ending on a hyphen
    assert abbreviation_length(["01a23d35-aaaa", "01a23d99-bbbb"]) == 8
    assert abbreviation_length(["01a23d35-aaaa", "01a23d35-bbbb"]) == 10
    assert abbreviate([None, ids[0]]) == {ids[0]: "01a23d35"}
