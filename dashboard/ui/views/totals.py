"""Under the connection gauge, beside the charts: what the calls shown cost since the page opened, in
words a person reads at a glance ("since 21:14:03 UTC: 1,204 calls · 2.1 M tokens · $4.31 · 12 errors")."""

from __future__ import annotations

import html

import panel as pn
import param
from panel.viewable import Viewer

from ..feed import TraceFeed
from ..totals import totals_words

# Said once, on hover: which calls the numbers count.
WHAT_COUNTS = ("Calls that ended since the page opened, each counted once, under the filters in force "
               "(calls already finished when the page loaded are not counted)")


class TotalsLine(Viewer):
    feed = param.ClassSelector(class_=TraceFeed)

    def __init__(self, **params):
        super().__init__(**params)
        self.pane = pn.pane.HTML("", css_classes=["trace-totals"], width=210, margin=(12, 10),
                                 styles={"font-size": "14px"})
        self.feed.param.watch(self._show, "totals")
        self._show()

    def _show(self, *_: object) -> None:
        totals = self.feed.totals
        words = "counting from the first calls to end…" if totals is None else totals_words(totals)
        self.pane.object = (f'<div title="{html.escape(WHAT_COUNTS)}"><div style="font-weight:600;color:#374151;'
                            f'margin-bottom:4px">Totals</div>{html.escape(words)}<div style="color:#6b7280;'
                            f'font-size:12px;margin-top:4px">calls ended since the page opened, under the filters '
                            f'in force</div></div>')

    def __panel__(self):
        return self.pane
