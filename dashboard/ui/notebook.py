"""Panel inside Jupyter, offline and correct: what ``extension()`` adds when it runs in a kernel.

Nothing may come from the internet (an air-gapped lab): Bokeh's and Panel's JavaScript is put in the
notebook (``inline``) instead of loaded from a CDN, and so is Notyf, the toasts' library. Inlined, Notyf
would stay a local variable of Bokeh's loader (its file declares ``var Notyf``) and every toast fail with
"Notyf is not defined", so it goes first as a plain script, which defines it globally (Panel's loader
then skips its own copy). Panel's stylesheets still name its CDN: the page takes them from the Jupyter
server instead (Panel's server extension serves them at ``panel_dist/``). The browser stops echoing the
kernel's own changes, and Panel's comms are handled on the kernel's main thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

import panel as pn
from panel.io.resources import CDN_DIST

log = logging.getLogger(__name__)

# Panel's own copy of Notyf (the toasts' library), shipped in its wheel.
NOTYF_JS = Path(pn.__file__).parent / "dist" / "bundled" / "notificationarea" / "notyf@3" / "notyf.min.js"
# Panel 1.9's notebook CommManager sends back to the kernel every change the kernel made (BokehJS marks
# those sync=false; Bokeh's own client skips them, Panel's does not): each batch of rows came back as a
# stale "edit" of the table, and the messages never stopped. Drop them in the browser.
NO_ECHO_JS = """
(function fix(tries) {
  let manager = null;
  try { manager = window.Bokeh && window.Bokeh.Models.get("panel.models.comm_manager.CommManager"); } catch (e) {}
  if (manager == null) { if (tries > 0) setTimeout(() => fix(tries - 1), 100); return; }
  const proto = manager.prototype;
  if (proto._traces_no_echo) return;
  const original = proto._document_changed;
  proto._document_changed = function (event) {
    if (event.sync === false) return;
    return original.call(this, event);
  };
  proto._traces_no_echo = true;
})(100);
"""


def panel_comms_on_main_shell() -> None:
    """Handle Panel's comm messages (clicks, page changes, selections) on the kernel's main thread.

    JupyterLab 4.4+ sends comm messages to kernel subshells by default ("Kernel Comms over subshells"),
    and ipykernel 7 runs each subshell in a thread of its own, with its own event loop. Panel's
    callbacks then ran beside the feed's tasks on the main thread: "Stop the live feed" failed about
    one time in two ("got Future attached to a different loop"), and the views were changed from two
    threads at once. ipykernel 7.4 asks each comm where its messages go; Panel's go to the main shell
    (as in ipykernel 6, or with that JupyterLab setting on "Disabled"). Other comms are left alone.
    """
    try:
        from ipykernel.comm.comm import BaseComm
        from pyviz_comms import CommManager
    except ImportError:
        return
    route = getattr(BaseComm, "_reply_subshell_for", None)
    if route is None or getattr(route, "_panel_on_main_shell", False):
        return  # an ipykernel without subshell routing, or done already

    def main_shell_for_panel(comm, data, default):
        if comm.target_name == "hv-extension-comm" or comm.target_name in CommManager._comms:
            return None  # the main shell
        return route(comm, data, default)

    main_shell_for_panel._panel_on_main_shell = True
    BaseComm._reply_subshell_for = main_shell_for_panel


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return hasattr(get_ipython(), "kernel")


# Panel's components link their stylesheets (theme, loading spinner) from its CDN, whatever ``inline``
# says. In a page that a Jupyter server serves, take them from the server's ``panel_dist/`` instead.
LOCAL_STYLESHEETS_JS = """
(function localStylesheets(tries) {
  const CDN = "__CDN__";
  let sheet = null;
  try { sheet = window.Bokeh && window.Bokeh.Models.get("ImportedStyleSheet"); } catch (e) {}
  if (sheet == null) { if (tries > 0) setTimeout(() => localStylesheets(tries - 1), 100); return; }
  const config = document.getElementById("jupyter-config-data");
  if (config == null) return;  // not a Jupyter server's page: nothing serves Panel's files here
  let base = "/";
  try { base = JSON.parse(config.textContent).baseUrl || "/"; } catch (e) {}
  if (!base.endsWith("/")) base += "/";
  const proto = sheet.prototype;
  if (proto._traces_local) return;
  const original = proto.underlying;
  proto.underlying = function () {
    const underlying = original.call(this);
    const href = underlying.el.getAttribute("href") || "";
    if (href.startsWith(CDN)) underlying.el.href = base + "panel_dist/" + href.slice(CDN.length);
    return underlying;
  };
  proto._traces_local = true;
})(100);
""".replace("__CDN__", CDN_DIST)


def _publish(script: str) -> None:
    from IPython.display import publish_display_data
    from panel.io.notebook import LOAD_MIME

    publish_display_data({LOAD_MIME: script, "application/javascript": script})


def before_extension() -> None:
    """Comms on the main thread, and Notyf published globally before Panel's loader runs."""
    panel_comms_on_main_shell()
    if NOTYF_JS.exists():
        _publish(NOTYF_JS.read_text(encoding="utf-8") + "\nwindow.Notyf = Notyf;\n")
    else:
        log.warning("Panel's Notyf is not at %s: toasts will not show offline", NOTYF_JS)


def after_extension() -> None:
    """Once BokehJS is loaded: no echoes, and stylesheets from the Jupyter server."""
    _publish(NO_ECHO_JS)
    _publish(LOCAL_STYLESHEETS_JS)
