"""Pure parsers behind `fdscope limits`: /proc/PID/limits and /proc/sys values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fdscope.errors import ParseError
from fdscope.parse.limits import Limit, parse_limits
from fdscope.parse.sysctl import FileNr, parse_file_nr, parse_int

LIMITS = "".join(
    f"{name:<25} {soft:<20} {hard:<20} {unit:<10}\n"
    for name, soft, hard, unit in [
        ("Limit", "Soft Limit", "Hard Limit", "Units"),
        ("Max cpu time", "unlimited", "unlimited", "seconds"),
        ("Max stack size", "8388608", "unlimited", "bytes"),
        ("Max processes", "96365", "96365", "processes"),
        ("Max open files", "4096", "524288", "files"),
        ("Max nice priority", "0", "0", ""),
        ("Max realtime timeout", "unlimited", "unlimited", "us"),
    ]
)


def test_limits_nofile_and_rows() -> None:
    lim = parse_limits(LIMITS)
    assert lim.nofile == Limit(4096, 524288, "files")
    assert lim.get("Max cpu time") == Limit(None, None, "seconds")
    assert lim.get("Max stack size") == Limit(8388608, None, "bytes")
    assert lim.get("Max nice priority") == Limit(0, 0, None)
    assert lim.get("Max bananas") is None
    assert len(lim.rows) == 6


def test_limits_without_nofile_row_is_a_parse_error() -> None:
    text = "\n".join(line for line in LIMITS.splitlines() if "open files" not in line)
    with pytest.raises(ParseError, match="Max open files"):
        _ = parse_limits(text).nofile


@pytest.mark.parametrize(
    "text",
    ["", "garbage\n", "Limit  Soft\nMax open files  many  4096  files\n", "Limit\nonewordonly\n"],
)
def test_limits_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        _ = parse_limits(text).nofile


def test_file_nr() -> None:
    assert parse_file_nr("261\t0\t2466177\n") == FileNr(261, 0, 2466177)
    for bad in ["", "1 2", "1 2 x", "1 2 3 4"]:
        with pytest.raises(ParseError):
            parse_file_nr(bad)


def test_parse_int() -> None:
    assert parse_int("9223372036854775807\n", "fs.file-max") == 9223372036854775807
    assert parse_int("4096\n", "net.core.somaxconn") == 4096
    with pytest.raises(ParseError, match="somaxconn"):
        parse_int("lots\n", "net.core.somaxconn")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fuzz_only_parse_errors_escape(text: str) -> None:
    for fn in (lambda t: parse_limits(t).nofile, parse_file_nr, lambda t: parse_int(t, "x")):
        try:
            fn(text)
        except ParseError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Max open files", "Max cpu time", "Max locked memory"]),
            st.one_of(st.just("unlimited"), st.integers(0, 2**63).map(str)),
            st.one_of(st.just("unlimited"), st.integers(0, 2**63).map(str)),
        ),
        min_size=1,
    )
)
def test_fuzz_structured_rows_round_trip(rows: list[tuple[str, str, str]]) -> None:
    text = "Limit                     Soft Limit           Hard Limit           Units     \n"
    text += "".join(f"{n:<25} {s:<20} {h:<20} files     \n" for n, s, h in rows)
    lim = parse_limits(text)
    name, soft, hard = rows[0]
    got = lim.get(name)
    assert got is not None
    assert got.soft == (None if soft == "unlimited" else int(soft))
    assert got.hard == (None if hard == "unlimited" else int(hard))
