"""The /ops chart's SVG: a bar per non-empty slot and series, stacked, scaled, labelled."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from afterimage.timeline import AHEAD, PAST, SERIES, SLOT, Timeline, slots
from receiver.chart import HEIGHT, PLOT, TOP, nice, svg

NS = "{http://www.w3.org/2000/svg}"
START = 1_765_000_800 - (PAST - 1) * SLOT  # the current slot: 2025-12-06 06:00 UTC


def timeline(**bars: dict[int, int]) -> Timeline:
    past = {name: [bars.get(name, {}).get(i, 0) for i in range(PAST)] for name in SERIES}
    return Timeline(START, past, [bars.get("dying", {}).get(i, 0) for i in range(AHEAD)])


def rects(doc: str) -> list[dict[str, str]]:
    root = ET.fromstring(doc)  # well-formed XML, or this raises
    assert root.tag == f"{NS}svg"
    return [{**r.attrib, "title": r.findtext(f"{NS}title") or ""}
            for r in root.iter(f"{NS}rect")]


def test_each_count_is_a_bar_in_its_slot_stacked_and_scaled() -> None:
    doc = svg(timeline(archived={PAST - 1: 6, 0: 1}, failed={PAST - 1: 2}, expired={10: 1},
                       dying={0: 3, 5: 1}))
    bars = rects(doc)
    got = sorted((b["data-series"], b["data-slot"], b["data-count"]) for b in bars)
    assert got == [
        ("archived", "2025-12-05T06:10Z", "1"), ("archived", "2025-12-06T06:00Z", "6"),
        ("dying", "+0min", "3"), ("dying", "+50min", "1"),
        ("expired", "2025-12-05T07:50Z", "1"), ("failed", "2025-12-06T06:00Z", "2"),
    ]
    now = {b["data-series"]: b for b in bars if b["data-slot"] == "2025-12-06T06:00Z"}
    # 8 tasks in the busiest slot: the scale is 10, archived at the bottom, failed on it
    assert float(now["archived"]["height"]) == 6 / 10 * PLOT
    assert float(now["archived"]["y"]) + float(now["archived"]["height"]) == TOP + PLOT
    assert float(now["failed"]["y"]) + float(now["failed"]["height"]) == float(
        now["archived"]["y"])
    assert now["archived"]["x"] == now["failed"]["x"]
    assert now["failed"]["title"] == "06:00 to 06:10 UTC: 2 failed"
    dying = {b["data-slot"]: b for b in bars if b["data-series"] == "dying"}
    assert float(dying["+0min"]["height"]) == 3 / 5 * PLOT  # its own scale: 5
    assert dying["+50min"]["title"] == "in 50 to 60 min: 1 links dying"
    assert all(float(b["y"]) >= 0 and float(b["y"]) + float(b["height"]) <= HEIGHT
               for b in bars)
    assert ">06:00<" in doc and ">03:00<" in doc  # time labels every 3 hours


def test_an_empty_day_draws_axes_and_no_bars() -> None:
    doc = svg(timeline())
    assert rects(doc) == []
    assert "next hour" in doc


def test_nice_scales() -> None:
    assert [nice(n) for n in (0, 1, 2, 3, 7, 10, 11, 49, 51, 999)] == [
        1, 1, 2, 5, 10, 10, 20, 50, 100, 1000]


def test_counts_land_in_their_slot_and_series() -> None:
    raw = {f"{START}|archived".encode(): b"2", f"{START + SLOT}|archive_failed".encode(): b"1",
           f"{START + SLOT}|generation_failed".encode(): b"4",
           f"{START - SLOT}|archived".encode(): b"9",  # older than 24 h: left out
           f"{START}|queued".encode(): b"5", b"junk": b"1"}
    got = slots(raw, START)
    assert got["archived"][0] == 2 and sum(got["archived"]) == 2
    assert got["failed"][1] == 5 and sum(got["failed"]) == 5
    assert sum(got["expired"]) == 0
