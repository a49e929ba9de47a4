"""An alert threshold set in the page, in Chromium: slow calls raise one toast, not one per trace, and
the model is marked on the charts (a ⚠ in its legend entries, the threshold line, the reason below)."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import shot
from .test_dashboard import TIMEOUT, open_dashboard, post

COUNT_TOASTS = """() => {
    window.alertToasts = [];
    new MutationObserver((records) => {
        for (const record of records) for (const node of record.addedNodes) {
            if (node.nodeType === 1 && node.matches('.notyf__toast')) window.alertToasts.push(node.textContent);
        }
    }).observe(document.body, {childList: true, subtree: true});
}"""
CHART_MARKS = """() => {
    const found = {line: null, labels: []};
    for (const doc of window.Bokeh.documents) for (const model of doc.all_models) {
        if (model.name === 'alert-threshold-p95') found.line = [model.visible, model.location];
        if (model.type === 'LegendItem') found.labels.push(JSON.stringify(model.label));
    }
    return found;
}"""


def test_a_threshold_set_in_the_page_raises_one_toast_for_a_burst_of_slow_calls_and_marks_the_chart(stack, page):
    api, panel = stack()
    for n in range(5):
        post(api, "alice", id=f"fast-{n}", name="warm-up", model="gpt-4o", status="success", latency_ms=300)
    open_dashboard(page, panel)
    page.evaluate(COUNT_TOASTS)
    box = page.locator(".trace-alert-p95 input")
    box.fill("2000")
    box.press("Enter")
    page.wait_for_function(f"() => {{ const line = ({CHART_MARKS})().line; return line && line[0] && line[1] === 2000; }}",
                           timeout=TIMEOUT)  # the threshold's line on the latency chart
    for n in range(12):  # a burst of slow calls, each its own trace, landing in one stats period or two
        post(api, "alice", id=f"slow-{n}", name="slow-call", model="gpt-4o", status="success", latency_ms=3000)
    toast = page.locator(".notyf__toast", has_text="gpt-4o p95 latency 3,000 ms is above 2,000 ms")
    expect(toast).to_be_visible(timeout=TIMEOUT)
    marks = page.locator(".trace-chart-marks")
    expect(marks).to_contain_text("⚠ gpt-4o: p95 latency 3,000 ms > 2,000 ms")
    assert any("⚠ gpt-4o" in label for label in page.evaluate(CHART_MARKS)["labels"])
    toast.evaluate("(e) => Promise.all(e.getAnimations({subtree: true}).map((a) => a.finished))")  # fully in
    shot(page, "alert")
    for n in range(10):  # still above: the next recompute changes the value shown, and says nothing
        post(api, "alice", id=f"slower-{n}", name="slower-call", model="gpt-4o", status="success", latency_ms=4000)
    expect(marks).to_contain_text("p95 latency 4,000 ms > 2,000 ms", timeout=TIMEOUT)
    told = [text for text in page.evaluate("window.alertToasts") if "p95 latency" in text]
    assert told == ["gpt-4o p95 latency 3,000 ms is above 2,000 ms"], told
