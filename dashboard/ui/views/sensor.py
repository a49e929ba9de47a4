"""Tells Python what the user does with the trace table that Tabulator does not report: scrolled
down, pointing at rows, which trace a click picked, asking to deselect (a second click on the
selected row, or Esc); and scrolls it back to the top.

Tabulator reports a selection as a row position. A row that arrives between the click and the
message moves every position by one, so the click's trace id (each row carries it on its status
pill, ``data-id``) is sent as well, before Tabulator's own message.

Panel's Tabulator reports its page and selection but not its scroll offset, and arrivals must not
move rows under a user who scrolled. This invisible component finds the table's scroll area (inside
the shadow root of the element with class ``trace-table``) and syncs one boolean.

'Away' is reported at once, already on a downward wheel, so the server stops updating the table
before rows can move; 'back at top' only once it has held for 300 ms. Panel's Tabulator restores
its recorded scroll offset after a data update and ignores scroll events while one is pending, so a
wheel landing during an update snaps back to the top: a drop to the top within 800 ms of leaving
it, with no upward gesture, is undone.
"""

from __future__ import annotations

import param
from panel.custom import JSComponent


class TableSensor(JSComponent):
    scrolled = param.Boolean(default=False, doc="The table is scrolled down past ``threshold`` pixels.")
    pointer_over = param.Boolean(default=False, doc="The pointer is over the rows (a click may be coming).")
    threshold = param.Integer(default=24)
    top_requests = param.Integer(default=0, doc="Incremented to scroll the table back to its top.")
    deselect_requests = param.Integer(default=0, doc="Incremented by the page: a second click on the selected row, or Esc.")
    picked = param.Dict(default={}, doc="The trace a click selected: {'id': ..., 'at': page time}, a new dict per click.")

    _esm = """
    function findHolder(root) {
      const stack = [root]
      while (stack.length) {
        const node = stack.pop()
        if (node.classList && node.classList.contains('tabulator-tableholder')) return node
        if (node.shadowRoot) stack.push(node.shadowRoot)
        for (const child of (node.children || [])) stack.push(child)
      }
      return null
    }

    export function render({ model }) {
      let holder = null, backTimer = null, leaveTimer = null, lastTop = 0, awaySince = 0, upAt = 0
      const setAway = (away) => {
        if (away === model.scrolled) return
        if (away) awaySince = performance.now()
        model.scrolled = away
      }
      const onGesture = (event) => {
        if (event.type === 'wheel' && event.deltaY > 0) setAway(true)   // freeze the server side at once
        else upAt = performance.now()                                   // may be upward: never undo it
      }
      const onScroll = () => {
        const top = holder.scrollTop, now = performance.now()
        if (top <= model.threshold && lastTop > model.threshold && now - awaySince < 800 && upAt < awaySince) {
          holder.scrollTop = lastTop   // snapped back by a re-render in flight, not by the user
          return
        }
        lastTop = top
        if (top > model.threshold) {
          clearTimeout(backTimer); backTimer = null
          setAway(true)
        } else if (model.scrolled && backTimer === null) {
          backTimer = setTimeout(() => { backTimer = null; if (holder.scrollTop <= model.threshold) setAway(false) }, 300)
        }
      }
      const attach = () => {   // Tabulator may rebuild its DOM: find the scroll area again when it is replaced
        if (holder !== null && holder.isConnected) return
        holder = findHolder(document)
        if (holder === null) return
        holder.addEventListener('scroll', onScroll, { passive: true })
        for (const type of ['wheel', 'keydown', 'pointerdown', 'touchmove'])
          holder.addEventListener(type, onGesture, { passive: true })
        // Rows must not move between aiming and clicking: hold while the pointer is on them,
        // release a moment after it leaves.
        holder.addEventListener('pointerenter', () => {
          clearTimeout(leaveTimer)
          if (!model.pointer_over) model.pointer_over = true
        })
        // A click on the row that is already selected means "deselect": seen before Tabulator handles it.
        holder.addEventListener('click', (event) => {
          const row = event.target.closest && event.target.closest('.tabulator-row')
          if (!row) return
          // After Tabulator's own click handling, which re-sends the same selection first.
          if (row.classList.contains('tabulator-selected')) setTimeout(() => { model.deselect_requests += 1 }, 0)
          else {
            const pill = row.querySelector('[data-id]')
            if (pill) model.picked = { id: pill.dataset.id, at: performance.now() }
          }
        }, { capture: true })
        holder.addEventListener('pointerleave', () => {
          clearTimeout(leaveTimer)
          leaveTimer = setTimeout(() => { if (model.pointer_over) model.pointer_over = false }, 300)
        })
        onScroll()
      }
      attach()
      const timer = setInterval(attach, 500)
      const onKey = (event) => { if (event.key === 'Escape') model.deselect_requests += 1 }
      document.addEventListener('keydown', onKey)
      model.on('remove', () => { clearInterval(timer); document.removeEventListener('keydown', onKey) })
      model.on('top_requests', () => {
        if (holder === null) return
        upAt = performance.now()
        holder.scrollTop = 0
        lastTop = 0
        clearTimeout(backTimer); backTimer = null
        setAway(false)
      })
    }
    """

    def to_top(self) -> None:
        self.top_requests += 1
