"""The recorder's buffer: what callers recorded and the worker has not yet delivered, bounded in bytes.

Callers ``put`` traces already encoded (``encode``: compact JSON, whose length is what the bound
counts), O(1) under a short lock and never any IO; the one worker takes them in order as batches
and settles each entry as sent or dropped. A trace recorded twice before it left (a call's start,
then its end) is kept once, as its latest version; a version recorded while the earlier one is on
the wire waits behind it, to be sent as an update. When the bytes held would pass the bound, the
new record is dropped and counted, with one warning per spell of drops.

The same condition lets ``flush`` wait for what was recorded before it, and lets ``close``, a flush
or a full batch wake the worker early."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("dashboard.client")


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """How delivery is going: records (a call's start and end are one each, or one when coalesced)
    ``sent`` and ``dropped`` (buffer full, refused by the API, or left at close), what is ``pending``
    (waiting or on the wire) and its size, and the last reason a send failed (kept after recovery)."""

    sent: int
    dropped: int
    pending: int
    pending_bytes: int
    last_error: str | None


@dataclass(slots=True, eq=False)
class Entry:
    """One trace to deliver: its fields as a JSON object without the id (a PATCH body as is)."""

    trace_id: str
    fields: bytes
    seq: int  # the order of the first record this entry holds; flush waits on it
    queued_at: float
    update: bool  # send as PATCH: an earlier version of the trace went (or is going) to the server
    busy: bool = False  # in a request now: a newer version waits behind it instead of replacing it
    switched: bool = False  # POST and PATCH were swapped once already (409 / 404)
    size: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.size = len(self.item)

    @property
    def item(self) -> bytes:
        """The trace as one element of a POST batch: the fields with the id put first."""
        head = b'{"id":' + json.dumps(self.trace_id).encode()
        return head + (b"}" if self.fields == b"{}" else b"," + self.fields[1:])


class TraceBuffer:
    """Bounded by ``max_bytes`` of encoded traces, waiting or on the wire alike; batches of up to
    ``batch_count`` traces and ``batch_bytes`` (a larger trace goes alone)."""

    def __init__(self, max_bytes: int, batch_count: int, batch_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_buffer_bytes must be positive")
        self.max_bytes = max_bytes
        self.batch_count = batch_count  # the worker lowers it while the API says 429
        self.batch_bytes = batch_bytes
        self.cond = threading.Condition(threading.Lock())
        self._entries: OrderedDict[int, Entry] = OrderedDict()  # by seq: the order they go in
        self._latest: dict[str, Entry] = {}  # each trace's newest entry, which a newer version replaces
        self._seq = 0
        self.bytes = 0
        self.sent = 0
        self.dropped = 0
        self._overflowing = False
        self._closed_warned = False
        self._kicked = False  # a flush or close asks the worker to send now, not at its next interval
        self.closing = False
        self.deadline = float("inf")  # while closing: when to give up on what is left

    # --- callers --------------------------------------------------------------------------------

    def put(self, trace_id: str, fields: bytes, *, follows: bool = False,
            slim: Callable[[], bytes] | None = None) -> bool:
        """Queue a version of a trace; False when it was dropped (no room, or closed).

        ``follows``: an earlier version was queued before; if it already left, send this as an update.
        ``slim``: a smaller version to queue instead when this one does not fit. When neither fits,
        an earlier version still waiting is dropped too: alone, a start would show a call running forever.
        """
        with self.cond:
            if self.closing:
                self._drop("the recorder is closed")
                return False
            current = self._latest.get(trace_id)
            if current is not None and not current.busy:  # not sent yet: this version replaces it
                for slimmed, body in enumerate(_versions(fields, slim)):
                    candidate = Entry(trace_id, body, current.seq, current.queued_at, current.update)
                    if self.bytes - current.size + candidate.size <= self.max_bytes:
                        if slimmed:
                            self._warn_full()
                        self.bytes += candidate.size - current.size
                        current.fields, current.size = candidate.fields, candidate.size
                        return True
                self._remove(current)
                self._drop()
                return False
            for slimmed, body in enumerate(_versions(fields, slim)):
                entry = Entry(trace_id, body, self._seq + 1, time.monotonic(), follows or current is not None)
                if self.bytes + entry.size <= self.max_bytes:
                    if slimmed:
                        self._warn_full()
                    was_ready = self._batch_ready()
                    self._seq += 1
                    self._entries[entry.seq] = entry
                    self._latest[trace_id] = entry
                    self.bytes += entry.size
                    if len(self._entries) == 1 or (self._batch_ready() and not was_ready):
                        self.cond.notify_all()  # the worker starts its interval, or sends a full batch now
                    return True
            self._drop()
            return False

    def count_dropped(self) -> None:
        """A record that never reached the buffer (it could not be encoded)."""
        with self.cond:
            self.dropped += 1

    def _drop(self, reason: str | None = None) -> None:
        self.dropped += 1
        if reason is None:
            self._warn_full()
        elif not self._closed_warned:
            self._closed_warned = True
            log.warning("trace recorder: %s; dropping what is recorded now", reason)

    def _warn_full(self) -> None:
        if not self._overflowing:  # once per spell of drops (or of ends sent without their data)
            self._overflowing = True
            log.warning("trace recorder: the buffer is full (%d bytes); dropping new records until the API "
                        "takes some (see recorder.dropped)", self.max_bytes)

    # --- flush and close ------------------------------------------------------------------------

    def wait_delivered(self, timeout: float | None) -> bool:
        """Wait until everything put before now is sent or dropped."""
        with self.cond:
            target = self._seq
            if self._entries:
                self._kicked = True
                self.cond.notify_all()
            return self.cond.wait_for(lambda: self._oldest() > target, timeout)

    def close(self, timeout: float) -> None:
        with self.cond:
            if not self.closing:
                self.closing = True
                self.deadline = time.monotonic() + max(0.0, timeout)
                self._kicked = True  # one more try now, whatever the backoff said
            self.cond.notify_all()

    def _oldest(self) -> float:
        return next(iter(self._entries), float("inf"))

    # --- the worker -----------------------------------------------------------------------------

    def next_batch(self, interval: float) -> list[Entry] | None:
        """The next entries to send, oldest first, marked busy: waits until there are some and it is
        time (``interval`` after the oldest arrived, or sooner when many wait, or on a flush or close).
        One update alone, or a batch of new traces (at least one).
        None once closing and nothing is left, or the close deadline passed."""
        with self.cond:
            while True:
                if self.closing:
                    if not self._entries or time.monotonic() >= self.deadline:
                        return None
                    self._kicked = False
                    return self._take()
                if self._entries:
                    wait = self._head().queued_at + interval - time.monotonic()
                    if self._kicked or wait <= 0 or self._batch_ready():
                        self._kicked = False
                        return self._take()
                    self.cond.wait(wait)
                else:
                    self.cond.wait()

    def _head(self) -> Entry:
        return next(iter(self._entries.values()))

    def _batch_ready(self) -> bool:
        return len(self._entries) >= self.batch_count or self.bytes >= self.batch_bytes

    def _take(self) -> list[Entry]:
        batch: list[Entry] = []
        size = 0
        for entry in self._entries.values():
            if entry.update:
                if not batch:
                    batch.append(entry)  # an update goes alone, and only after what came before it
                break
            if batch and (len(batch) >= self.batch_count or size + entry.size > self.batch_bytes):
                break
            batch.append(entry)
            size += entry.size
        for entry in batch:
            entry.busy = True
        return batch

    def release(self, batch: list[Entry]) -> None:
        """A retryable failure: the entries wait again where they were, and may be replaced meanwhile."""
        with self.cond:
            for entry in batch:
                entry.busy = False

    def switch(self, entry: Entry) -> None:
        """Send this entry the other way (PATCH for a POST the server had, POST for a PATCH it had not)."""
        with self.cond:
            entry.update = not entry.update
            entry.switched = True

    def settle(self, batch: list[Entry], *, sent: bool) -> None:
        with self.cond:
            for entry in batch:
                if not self._remove(entry):
                    continue
                if sent:
                    self.sent += 1
                else:
                    self.dropped += 1
            if sent:
                self._overflowing = False  # room again: the next spell of drops warns again
            self.cond.notify_all()

    def _remove(self, entry: Entry) -> bool:
        if self._entries.pop(entry.seq, None) is None:
            return False
        self.bytes -= entry.size
        if self._latest.get(entry.trace_id) is entry:
            del self._latest[entry.trace_id]
        self.cond.notify_all()
        return True

    def abandon(self) -> int:
        """What is left when the worker stops: dropped and counted."""
        with self.cond:
            left = len(self._entries)
            self.dropped += left
            self._entries.clear()
            self._latest.clear()
            self.bytes = 0
            self.cond.notify_all()
            return left

    def pause(self, delay: float, at_least: float = 0.0) -> None:
        """The wait between retries: cut short by a flush or a close (which try once more at once),
        but never before ``at_least`` (a server's ``Retry-After``), nor past the close deadline."""
        with self.cond:
            now = time.monotonic()
            end, floor = now + delay, now + at_least
            while not (self._kicked and now >= floor):
                left = min(end if not self._kicked else floor, self.deadline) - now
                if left <= 0:
                    break
                self.cond.wait(left)
                now = time.monotonic()
            self._kicked = True  # the retry is due: the next batch goes at once, not an interval later

    def stats(self, last_error: str | None) -> RecorderStats:
        with self.cond:
            return RecorderStats(self.sent, self.dropped, len(self._entries), self.bytes, last_error)


def _versions(fields: bytes, slim: Callable[[], bytes] | None) -> Iterator[bytes]:
    yield fields
    if slim is not None:
        yield slim()


def jsonable(value: Any) -> Any:
    """The JSON form of what ``json`` does not know: pydantic models, dataclasses, sets, else ``str``."""
    try:
        if hasattr(value, "model_dump"):
            return value.model_dump(mode="json")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
    except Exception:
        pass
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def encode(fields: dict[str, Any]) -> bytes:
    """A trace's fields as the compact UTF-8 JSON the buffer holds and counts; raises ``ValueError``
    (NaN, a cycle) or ``TypeError`` for what cannot be JSON."""
    text = json.dumps(fields, default=jsonable, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: escape it rather than lose the record
        return json.dumps(fields, default=jsonable, allow_nan=False, separators=(",", ":")).encode()
