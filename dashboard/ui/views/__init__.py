"""The dashboard's views: each a ``Viewer`` over one TraceFeed, reading it and calling its actions."""

from .charts import ModelCharts
from .controls import ErrorBanner, FilterBar, LiveControls, TokenPrompt
from .detail import TraceDetail
from .export import ExportButtons
from .health import HealthGauge
from .table import TraceTable
from .toasts import Toaster

__all__ = ["ErrorBanner", "ExportButtons", "FilterBar", "HealthGauge", "LiveControls", "ModelCharts", "TokenPrompt", "Toaster",
           "TraceDetail", "TraceTable"]
