"""The queue of one reporter's events, with progress coalesced and a size bound."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import msgspec

from ingestion_tracker_client._events import FINAL_TYPES, Event


def _merge_progress(older: Event, newer: Event) -> Event:
    """Return ``newer`` with the fields it leaves out taken from ``older``.

    The tracker keeps a progress field that an event leaves out, so this merge sends
    the same state as sending both events.
    """
    return msgspec.structs.replace(
        newer,
        current=older.current if newer.current is None else newer.current,
        total=older.total if newer.total is None else newer.total,
        message=older.message if newer.message is None else newer.message,
    )


def describe(events: Iterable[Event]) -> str:
    """Summarise events by type, for example ``1 started, 1 progress, 1 completed``."""
    counts = Counter(event.type for event in events)
    return ", ".join(f"{count} {kind}" for kind, count in counts.items()) or "none"


class EventQueue:
    """Events of one job waiting to be sent, in the order of the calls.

    At most one progress event waits. A new one replaces it and goes to the end,
    merged over the old one. Status events keep their order.

    Beyond ``max_size`` events the oldest heartbeat that has a later event behind it
    is dropped. Every event refreshes the job's ``last_event_at``, so the tracker ends
    in the same state. ``started``, ``completed``, ``failed``, ``cancelled`` and the
    waiting progress event are never dropped, so only those can exceed ``max_size``.
    """

    def __init__(self, max_size: int) -> None:
        self._events: list[Event] = []
        self._max_size = max_size

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events)

    def add(self, event: Event) -> int:
        """Append an event and return how many heartbeats the bound dropped."""
        if event.type == "progress":
            event = self._take_over_progress(event)
        self._events.append(event)
        return self._enforce_bound()

    def take(self, limit: int) -> list[Event]:
        """Remove and return up to ``limit`` events from the front."""
        batch = self._events[:limit]
        del self._events[:limit]
        return batch

    def requeue(self, batch: list[Event]) -> int:
        """Put back a batch that failed to send, in front of the newer events.

        Returns how many heartbeats the bound dropped.
        """
        newer = self._events
        self._events = list(batch)
        dropped = 0
        for event in newer:
            dropped += self.add(event)
        return dropped

    def has_final(self) -> bool:
        return any(event.type in FINAL_TYPES for event in self._events)

    def _take_over_progress(self, event: Event) -> Event:
        """Remove the waiting progress event, if any, and merge it under ``event``."""
        for index in range(len(self._events) - 1, -1, -1):
            waiting = self._events[index]
            if waiting.type == "progress":
                del self._events[index]
                return _merge_progress(waiting, event)
        return event

    def _enforce_bound(self) -> int:
        dropped = 0
        while len(self._events) > self._max_size:
            # The last event has nothing behind it that would refresh the job.
            index = next(
                (
                    position
                    for position in range(len(self._events) - 1)
                    if self._events[position].type == "heartbeat"
                ),
                None,
            )
            if index is None:
                break
            del self._events[index]
            dropped += 1
        return dropped
