"""SSEParser against the event stream rules of the WHATWG HTML standard."""

from __future__ import annotations

import pytest
from ingestion_tracker_client._sse import ServerSentEvent, SSEParser


def parse(*chunks: bytes) -> tuple[list[ServerSentEvent], SSEParser]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    events.extend(parser.end())
    return events, parser


def test_single_message_with_id() -> None:
    events, parser = parse(b"id: 8123-455\ndata: {}\n\n")
    assert events == [ServerSentEvent(data="{}", id="8123-455")]
    assert parser.last_event_id == "8123-455"


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_line_endings(ending: bytes) -> None:
    body = ending.join([b"id: 1", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    events, _ = parse(body)
    assert [event.data for event in events] == ["a\nb", "c"]
    assert [event.id for event in events] == ["1", "1"]


def test_mixed_line_endings_in_one_stream() -> None:
    events, _ = parse(b"data: a\r\ndata: b\rdata: c\n\r\n")
    assert [event.data for event in events] == ["a\nb\nc"]


def test_crlf_split_across_chunks_is_one_line_ending() -> None:
    events, _ = parse(b"data: a\r", b"\n", b"\r", b"\ndata: b\r", b"\r")
    assert [event.data for event in events] == ["a", "b"]


def test_every_byte_in_its_own_chunk() -> None:
    body = "\ufeffid: 7\r\ndata: grüße\r\n\r\n".encode()
    events, parser = parse(*(body[index : index + 1] for index in range(len(body))))
    assert events == [ServerSentEvent(data="grüße", id="7")]
    assert parser.last_event_id == "7"


def test_message_waits_for_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\n") == [ServerSentEvent(data="a")]


def test_multiline_data_keeps_empty_lines() -> None:
    events, _ = parse(b"data: first\ndata\ndata:\ndata: last\n\n")
    assert [event.data for event in events] == ["first\n\n\nlast"]


def test_empty_data_field_is_dispatched() -> None:
    events, _ = parse(b"data\n\n")
    assert events == [ServerSentEvent(data="")]


def test_only_one_leading_space_is_removed() -> None:
    events, _ = parse(b"data:  two spaces\ndata:none\n\n")
    assert [event.data for event in events] == [" two spaces\nnone"]


def test_comments_are_ignored() -> None:
    events, parser = parse(b": keep-alive\n\n:\ndata: x\n: inside\n\n")
    assert [event.data for event in events] == ["x"]
    assert parser.last_event_id == ""


def test_id_only_message_updates_last_id_without_event() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 10-0\n\n") == []
    assert parser.last_event_id == "10-0"
    assert parser.feed(b"data: {}\n\n") == [ServerSentEvent(data="{}", id="10-0")]


def test_id_applies_only_once_the_message_ends() -> None:
    parser = SSEParser("start")
    parser.feed(b"id: next\ndata: x\n")
    assert parser.last_event_id == "start"
    parser.feed(b"\n")
    assert parser.last_event_id == "next"


def test_empty_id_resets_last_id() -> None:
    events, parser = parse(b"id: 1\ndata: a\n\nid\ndata: b\n\n")
    assert [event.id for event in events] == ["1", ""]
    assert parser.last_event_id == ""


def test_id_with_null_is_ignored() -> None:
    events, parser = parse(b"id: 1\n\nid: 2\x003\ndata: a\n\n")
    assert events == [ServerSentEvent(data="a", id="1")]
    assert parser.last_event_id == "1"


def test_starting_last_event_id_is_kept() -> None:
    parser = SSEParser("resume-5")
    assert parser.feed(b"data: a\n\n") == [ServerSentEvent(data="a", id="resume-5")]


def test_event_type_applies_to_one_message() -> None:
    events, _ = parse(b"event: job\ndata: a\n\ndata: b\n\n")
    assert [event.event for event in events] == ["job", "message"]


def test_event_type_without_data_is_dropped() -> None:
    events, _ = parse(b"event: job\n\ndata: b\n\n")
    assert events == [ServerSentEvent(data="b")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"retry: 2500", 2500),
        (b"retry:0", 0),
        (b"retry: 25.5", None),
        (b"retry: -1", None),
        (b"retry: 1e3", None),
        (b"retry:", None),
        (b"retry: \xd9\xa3", None),
    ],
)
def test_retry_takes_ascii_digits_only(line: bytes, expected: int | None) -> None:
    _, parser = parse(line + b"\n\n")
    assert parser.retry == expected


def test_retry_keeps_last_valid_value() -> None:
    _, parser = parse(b"retry: 100\n\nretry: soon\n\n")
    assert parser.retry == 100


def test_unknown_fields_are_ignored() -> None:
    events, _ = parse(b"foo: bar\nDATA: upper\nid : spaced\ndata: a\n\n")
    assert events == [ServerSentEvent(data="a")]


def test_field_without_colon_has_empty_value() -> None:
    events, parser = parse(b"id: 3\n\nid\n\n")
    assert events == []
    assert parser.last_event_id == ""


def test_leading_bom_is_dropped_once() -> None:
    events, _ = parse(b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n")
    assert [event.data for event in events] == ["a"]


def test_bom_split_across_chunks() -> None:
    events, _ = parse(b"\xef", b"\xbb", b"\xbfdata: a\n\n")
    assert [event.data for event in events] == ["a"]


def test_invalid_utf8_becomes_replacement_character() -> None:
    events, _ = parse(b"data: a\xffb\n\n")
    assert [event.data for event in events] == ["a\ufffdb"]


def test_multibyte_character_split_across_chunks() -> None:
    encoded = "data: é€\n\n".encode()
    events, _ = parse(encoded[:7], encoded[7:9], encoded[9:])
    assert [event.data for event in events] == ["é€"]


def test_unfinished_message_at_end_is_discarded() -> None:
    events, parser = parse(b"data: a\n\nid: 9\ndata: b\n")
    assert [event.data for event in events] == ["a"]
    assert parser.last_event_id == ""


def test_final_cr_completes_the_message() -> None:
    events, _ = parse(b"data: a\r\r")
    assert [event.data for event in events] == ["a"]


def test_end_resets_message_for_next_connection() -> None:
    parser = SSEParser()
    parser.feed(b"data: lost\n")
    parser.end()
    assert parser.feed(b"data: kept\n\n") == [ServerSentEvent(data="kept")]
