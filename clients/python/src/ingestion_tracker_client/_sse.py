"""An I/O-free parser of ``text/event-stream`` bodies (server-sent events).

It follows the event stream interpretation of the WHATWG HTML standard, section
9.2.6 (https://html.spec.whatwg.org/multipage/server-sent-events.html). The body
is UTF-8 with an optional leading byte order mark, and lines end in CRLF, LF or
CR. Lines starting with a colon are comments, and a blank line dispatches the
message collected so far. A message without ``data`` is not dispatched, but its ``id``
still becomes the last event id.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

_NULL = "\0"


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched message; ``id`` is the stream's last event id at dispatch."""

    data: str
    event: str = "message"
    id: str = ""


class SSEParser:
    """Turn chunks of an event stream into ServerSentEvents as they arrive.

    ``last_event_id`` and ``retry`` (the reconnection time in milliseconds, or None
    until the server sends one) are the stream's state, which a client uses to
    reconnect. Use one parser per connection, because each connection may start
    with a byte order mark, but copy ``last_event_id`` into the next one.
    """

    def __init__(self, last_event_id: str = "") -> None:
        # utf-8-sig drops one byte order mark at the start only, and "replace"
        # turns invalid bytes into U+FFFD as the standard's UTF-8 decode does.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._pending = ""
        self._data: list[str] = []
        self._event_type = ""
        self._id_buffer = last_event_id
        self.last_event_id = last_event_id
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Parse the next bytes of the body and return the messages they complete."""
        return self._feed_text(self._decoder.decode(chunk))

    def end(self) -> list[ServerSentEvent]:
        """Parse what is left once the body ended.

        A last line that ends in CR is complete. A message without its closing blank
        line is discarded, as the standard requires.
        """
        events = self._feed_text(self._decoder.decode(b"", final=True))
        last_line = self._pending
        self._pending = ""
        if last_line.endswith("\r"):
            event = self._line(last_line[:-1])
            if event is not None:
                events.append(event)
        self._data = []
        self._event_type = ""
        self._id_buffer = self.last_event_id
        return events

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        """Process every complete line and keep the rest for the next chunk."""
        text = self._pending + text
        # A CR at the end may be the first half of a CRLF, so it waits for more.
        held_cr = "\r" if text.endswith("\r") else ""
        if held_cr:
            text = text[:-1]
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._pending = lines.pop() + held_cr
        events: list[ServerSentEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        self._field(name, value)
        return None

    def _field(self, name: str, value: str) -> None:
        """Apply one field; fields other than these four are ignored."""
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if _NULL not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _dispatch(self) -> ServerSentEvent | None:
        """End the message at a blank line, returning it unless it had no data."""
        self.last_event_id = self._id_buffer
        data, event_type = self._data, self._event_type
        self._data = []
        self._event_type = ""
        if not data:
            return None
        return ServerSentEvent(
            data="\n".join(data), event=event_type or "message", id=self.last_event_id
        )
