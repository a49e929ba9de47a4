"""Download what the table shows: two buttons, CSV and Parquet, each building its file when clicked,
from the rows shown at that moment (model, status and text filters applied) and named after them."""

from __future__ import annotations

import io
from collections.abc import Callable

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from ..export import export_filename, export_frame, to_csv_bytes, to_parquet_bytes
from ..feed import TraceFeed

BUTTON_MARGIN = (24, 0, 5, 5)  # level with the filters' inputs, under their labels
CAPTION_MARGIN = (30, 0, 5, 10)  # level with the buttons beside it


class ExportButtons(Viewer):
    """The "CSV" and "Parquet" buttons: the whole traces of the rows shown, newest first, as a file."""

    feed = param.ClassSelector(class_=TraceFeed)

    def __init__(self, **params):
        super().__init__(**params)
        hint = "Download the rows shown (filters applied), whole traces, as {}"
        self.csv = pn.widgets.FileDownload(label="CSV", filename="traces.csv", width=70, margin=BUTTON_MARGIN,
                                           description=hint.format("CSV"),
                                           callback=lambda: self._file(self.csv, "csv", to_csv_bytes))
        self.parquet = pn.widgets.FileDownload(label="Parquet", filename="traces.parquet", width=90, margin=BUTTON_MARGIN,
                                               description=hint.format("Parquet"),
                                               callback=lambda: self._file(self.parquet, "parquet", to_parquet_bytes))
        self.caption = pn.pane.HTML('<span class="trace-export">download</span>', margin=CAPTION_MARGIN,
                                    styles={"color": "#4b5563"})

    def frame(self) -> pd.DataFrame:
        """What a click exports now: the whole trace of every row shown, in the table's order."""
        return export_frame(self.feed.filtered_frame(), self.feed.trace)

    def _file(self, button: pn.widgets.FileDownload, extension: str,
              encode: Callable[[pd.DataFrame], bytes]) -> io.BytesIO:
        feed = self.feed
        # FileDownload reads ``filename`` after its callback returns: the name says the filters of now.
        button.filename = export_filename(extension, model=feed.model, status=feed.status_filter, text=feed.text)
        return io.BytesIO(encode(self.frame()))

    def __panel__(self):
        return pn.Row(self.caption, self.csv, self.parquet, margin=0)
