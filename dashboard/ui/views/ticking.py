"""Markup whose seconds count up in the browser: the health gauge and "refreshed … (N s ago)".

Rendered on the server, both changed every second, so every open tab cost the panel server a render
and a websocket message per second, idle or not (about 1.3–1.8% of a core per tab, ``bench/SPEED.md``),
and five tabs opening at once took 15–20% longer for it (measured with and without). Now the server
sends the markup with the age it had when sent, again only when that age jumps (new activity, a
reload) or the words change, and the browser adds the seconds since.

In the template, ``{s}`` is the age in whole seconds and ``{deg}`` a dial needle's angle for it
(``dial_sweep`` degrees at ``dial_top`` seconds and beyond).
"""

from __future__ import annotations

import math

import param
from panel.custom import JSComponent


def fill(template: str, seconds: float | None, dial_top: float = 1.0, dial_sweep: float = 0.0) -> str:
    """The markup as the browser shows it at ``seconds`` (the same sums as the script below)."""
    if seconds is None:
        return template
    whole = max(0, math.floor(seconds + 0.5))  # JavaScript's Math.round, not Python's to-even
    angle = min(whole, dial_top) / dial_top * dial_sweep
    return template.replace("{s}", str(whole)).replace("{deg}", f"{angle:.1f}")


class TickingHTML(JSComponent):
    template = param.String(default="", doc="The markup: {s} the age in whole seconds, {deg} the needle's angle.")
    seconds = param.Number(default=None, allow_None=True, doc="The age when sent; None: the markup as it is, still.")
    sent = param.Integer(default=0, doc="One more for every show(): the browser restarts its count even for an equal age.")
    dial_top = param.Number(default=1.0, bounds=(0, None), inclusive_bounds=(False, True))
    dial_sweep = param.Number(default=0.0)

    _esm = """
    export function render({ model }) {
      const el = document.createElement('div')
      let since = performance.now(), shown = null
      const draw = (force) => {
        let html = model.template
        if (model.seconds !== null && model.seconds !== undefined) {
          const s = Math.max(0, Math.round(model.seconds + (performance.now() - since) / 1000))
          if (s === shown && !force) return
          shown = s
          const angle = Math.min(s, model.dial_top) / model.dial_top * model.dial_sweep
          html = html.replaceAll('{s}', String(s)).replaceAll('{deg}', angle.toFixed(1))
        } else if (!force) return
        el.innerHTML = html
      }
      model.on(['template', 'seconds', 'sent'], () => { since = performance.now(); draw(true) })
      const timer = setInterval(() => draw(false), 250)
      model.on('remove', () => clearInterval(timer))
      draw(true)
      return el
    }
    """

    def show(self, template: str, seconds: float | None) -> None:
        """Show ``template`` counting up from ``seconds`` (None: still)."""
        self.param.update(template=template, seconds=seconds, sent=self.sent + 1)

    @property
    def text(self) -> str:
        """What the browser shows as the markup arrives."""
        return fill(self.template, self.seconds, self.dial_top, self.dial_sweep)
