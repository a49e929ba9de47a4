"""The query box's language: what a data scientist types works as ``df.query`` would, and nothing typed
there can run anything but a filter over the table's columns."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dashboard.ui.query import MAX_QUERY_CHARS, QueryError, compile_query
from dashboard.ui.rows import ROW_COLUMNS

NAN = math.nan


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["a", "b", "c", "d"],
        "name": ["rag-answer", "chat", "rag-retrieve", "summarize"],
        "model": ["gpt-4o", "claude", "gpt-4o", "gpt-4o-mini"],
        "status": ["success", "error", "running", "success"],
        "latency_ms": [1500.0, 200.0, NAN, 3000.0],
        "total_tokens": [120.0, 40.0, NAN, 900.0],
        "cost_usd": [0.02, 0.001, NAN, 0.05],
        "error": ["", "rate limited", "", ""],
    })


def kept(frame: pd.DataFrame, text: str) -> list[str]:
    query = compile_query(text, frame.columns)
    assert query is not None
    return list(frame.loc[query.mask(frame), "id"])


@pytest.mark.parametrize(("text", "ids"), [
    ('latency_ms > 1000 and model == "gpt-4o"', ["a"]),
    ('name.str.contains("rag")', ["a", "c"]),
    ('cost_usd > 0.01 or status == "error"', ["a", "b", "d"]),
    ("model in ['claude', 'gpt-4o-mini']", ["b", "d"]),
    ("model not in ['gpt-4o']", ["b", "d"]),
    ('model.isin(["gpt-4o"]) & ~(status == "running")', ["a"]),
    ("latency_ms / 1000 >= 1.5", ["a", "d"]),
    ("100 < latency_ms < 2000", ["a", "b"]),
    ("latency_ms.between(100, 1600)", ["a", "b"]),
    ("latency_ms.isna()", ["c"]),
    ("error.str.len() > 0", ["b"]),
    ('name.str.startswith("rag")', ["a", "c"]),
    ('name.str.contains("RAG", case=False)', ["a", "c"]),
    ("total_tokens * cost_usd > 10", ["d"]),
    ("-latency_ms < -2000", ["d"]),
    ("True", ["a", "b", "c", "d"]),
])
def test_what_a_data_scientist_types_filters_as_df_query_does(frame, text, ids):
    assert kept(frame, text) == ids
    if "case=" not in text and text != "True":  # pandas itself agrees (where its own syntax is the same)
        assert list(frame.query(text.replace('.str.contains("rag")', '.str.contains("rag", regex=False)'),
                                engine="python")["id"]) == ids


def test_an_empty_query_keeps_every_row():
    assert compile_query("   ", ROW_COLUMNS) is None


def test_text_matching_is_plain_text_never_a_pattern(frame):
    frame.loc[0, "name"] = "a.b(c)+"
    assert kept(frame, 'name.str.contains("(c)+")') == ["a"]
    assert kept(frame, 'name.str.contains(".")') == ["a"]


HOSTILE = [
    ('__import__("os").system("touch /tmp/pwned")', "only a column's own methods"),
    ("name.__class__.__mro__", "dunder"),
    ("model.values", "attribute 'values'"),
    ("name.str.__class__", "dunder"),
    ("open('/etc/passwd')", "only column methods"),
    ("eval('1')", "only column methods"),
    ("@pd.io.common", "@ or backticks"),
    ("`model` == 'x'", "@ or backticks"),
    ("latency_ms.apply(print)", "may not call 'apply'"),
    ("model.pipe(print)", "may not call 'pipe'"),
    ("name.str.contains('a', regex=True)", "never as a regular expression"),
    ("name.str.match('(a+)+$')", "may not call 'match'"),
    ("name.str.contains(model)", "plain values"),
    ("latency_ms ** 10 ** 10", "operator **"),
    ("[x for x in model]", "comprehensions"),
    ("(lambda: 1)()", "only column methods"),
    ("f'{name}' == 'x'", "f-strings"),
    ("name[0] == 'r'", "subscripts"),
    ("globals", "names no column 'globals'"),
    ("(x := 1)", ":="),
    (repr("x" * 2000) + " == name", "longer than"),
    ("model == 1 and", "does not parse"),
    ("not " * 200 + "True", "deeper"),
    ("x" * (MAX_QUERY_CHARS + 1), "longer than"),
]


@pytest.mark.parametrize(("text", "said"), HOSTILE, ids=[text[:40] for text, _ in HOSTILE])
def test_nothing_typed_can_run_anything_but_a_filter_and_the_refusal_says_why(text, said):
    with pytest.raises(QueryError) as refused:
        compile_query(text, ROW_COLUMNS)
    assert said in str(refused.value)


@pytest.mark.parametrize(("text", "said"), [
    ("latency_ms", "true or false"),
    ("model > 1", "cannot be applied"),
    ("latency_ms and status == 'error'", "comparisons on each side"),
    ("'a' * 10000000 == name", "numbers only"),  # refused before any text is built
    ("name * 100000000 == 'a'", "numbers only"),
])
def test_an_expression_that_parses_but_cannot_filter_says_so_when_applied(frame, text, said):
    query = compile_query(text, frame.columns)
    assert query is not None
    with pytest.raises(QueryError) as refused:
        query.mask(frame)
    assert said in str(refused.value)


def test_an_unknown_column_is_named_with_the_columns_there_are():
    with pytest.raises(QueryError) as refused:
        compile_query("latency > 1000", ROW_COLUMNS)
    assert "'latency'" in str(refused.value) and "latency_ms" in str(refused.value)


def test_a_query_knows_the_columns_it_names_and_filters_a_frame_of_only_those():
    """Arrivals are filtered on a frame of just the columns the query names (the cheap way per batch)."""
    from dashboard.ui.row_filter import QUERY_COLUMNS, RowFilter

    query = compile_query('latency_ms > 1000 or name.str.contains("rag")', QUERY_COLUMNS)
    assert query.columns == {"latency_ms", "name"}
    traces = [{"id": "slow", "latency_ms": 1500}, {"id": "rag", "name": "rag-answer"}, {"id": "other", "name": "x"}]
    assert RowFilter(query=query).keeps(traces) == [True, True, False]
    constant = compile_query("True", QUERY_COLUMNS)
    assert constant.columns == frozenset() and RowFilter(query=constant).keeps(traces) == [True, True, True]
