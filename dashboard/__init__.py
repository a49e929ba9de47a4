"""Live LLM traces: a streaming trace API, a resumable client, and a Panel dashboard.

The rooms: ``server`` (the API: routes, the stream and its hub, writes, stores), ``client`` (the
resumable SSE client), ``ui`` (the Panel dashboard), ``demo`` (synthetic traffic). Shared by all:
``config`` (settings from the environment), ``schema`` (the trace and its events) and ``backoff``.
Entry points: ``python -m dashboard`` and ``panel serve dashboard/app.py``.
"""

__version__ = "0.1.0"
