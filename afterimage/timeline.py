"""The last 24 hours in 10-minute slots, for /ops's chart: how many tasks ended archived,
failed (archive_failed or generation_failed) or expired in each slot — counted by
lua/transition.lua in `ai:outcomes:{day}` as the state changes — and how many unarchived tasks'
links die in each 10 minutes of the coming hour (from the `ai:deadline` index).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from afterimage import keys

SLOT = 600  # seconds per bar
PAST = 24 * 3600 // SLOT  # slots shown before now
AHEAD = 3600 // SLOT  # slots of link deadlines shown after now
# Series of the chart -> the states counted in it.
SERIES = {"archived": ("archived",), "failed": ("archive_failed", "generation_failed"),
          "expired": ("expired",)}


@dataclass(frozen=True)
class Timeline:
    start: int  # unix time the first past slot begins; the current slot is the last one
    past: dict[str, list[int]]  # series name -> PAST counts, oldest first
    dying: list[int]  # links dying in each of the AHEAD slots from now on


def slots(raw: Mapping[bytes, bytes], start: int) -> dict[str, list[int]]:
    """The series from `ai:outcomes:{day}` fields ("{slot}|{state}" -> count) for the PAST
    slots from `start`; fields outside them or of other states are left out."""
    out = {name: [0] * PAST for name in SERIES}
    which = {state: name for name, states in SERIES.items() for state in states}
    for field, value in raw.items():
        slot, _, state = field.decode().partition("|")
        i = (int(slot) - start) // SLOT if slot.isdigit() else -1
        if state in which and 0 <= i < PAST:
            out[which[state]][i] += int(value)
    return out


async def read(client: Any, now: float) -> Timeline:
    """The timeline at `now`, from an asyncio Redis client, in one pipelined round trip."""
    current = math.floor(now / SLOT) * SLOT
    start = current - (PAST - 1) * SLOT
    pipe = client.pipeline(transaction=False)
    days = sorted({start // 86400, current // 86400})
    for day in days:
        pipe.hgetall(keys.outcomes(day))
    for i in range(AHEAD):
        pipe.zcount(keys.DEADLINES, f"({now + i * SLOT}" if i else now, now + (i + 1) * SLOT)
    replies: list[Any] = await pipe.execute()
    raw: dict[bytes, bytes] = {}
    for reply in replies[: len(days)]:
        raw.update(reply)  # two days never share a field: the slot names its day
    return Timeline(start, slots(raw, start), [int(n) for n in replies[len(days):]])
