"""The detail view's text: what the writer gave, escaped, and nothing it did not give."""

from __future__ import annotations

from dashboard.ui.views.detail import render_trace


def test_token_counts_are_the_ones_given_never_an_invented_zero():
    assert "42 total" in render_trace({"id": "a", "total_tokens": 42})
    assert " in ·" not in render_trace({"id": "a", "total_tokens": 42})
    assert "1,200 in · 30 out · 1,230 total" in render_trace(
        {"id": "a", "input_tokens": 1200, "output_tokens": 30, "total_tokens": 1230})
    assert "tokens" not in render_trace({"id": "a"})


def test_what_the_writer_sent_is_shown_as_text_not_markup():
    html = render_trace({"id": "a", "name": "<b>x</b>", "error": "<script>alert(1)</script>"})
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;x&lt;/b&gt;" in html
