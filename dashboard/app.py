"""``panel serve dashboard/app.py``: the live trace dashboard (reads TRACES_API_URL and TRACES_TOKEN)."""

import panel as pn

from dashboard.ui.session import extension, serve

extension()

if pn.state.served:
    serve().servable(title="Live LLM traces")
