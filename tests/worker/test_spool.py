"""Image bodies stay in memory only while the process's byte budget allows."""

from __future__ import annotations

import os

from worker.spool import MemoryBudget, Spool


def test_a_spool_goes_to_disk_when_the_budget_is_spent_and_gives_its_bytes_back() -> None:
    budget = MemoryBudget(1000)
    first, second = Spool(budget), Spool(budget)
    a, b = os.urandom(600), os.urandom(700)
    first.write(a)
    assert (first.in_memory, budget.used) == (True, 600)
    second.write(b[:300])
    assert (second.in_memory, budget.used) == (True, 900)
    second.write(b[300:])  # 1,300 bytes would not fit: the whole body moves to disk
    assert (second.in_memory, budget.used) == (False, 600)
    for spool, body in ((first, a), (second, b)):
        spool.seek(0)
        assert spool.read() == body
        spool.seek(100)
        assert spool.read(50) == body[100:150]
        assert spool.tell() == 150
    first.close()
    assert budget.used == 0
    third = Spool(budget)
    third.write(os.urandom(1000))
    assert third.in_memory
    second.close()
    third.close()
    assert budget.used == 0


def test_a_budget_of_nothing_sends_every_body_to_disk() -> None:
    budget = MemoryBudget(0)
    with Spool(budget) as spool:
        spool.write(b"x")
        assert not spool.in_memory
        assert spool.seek(0) == 0
        buffer = bytearray(4)
        assert spool.readinto(buffer) == 1
        assert bytes(buffer[:1]) == b"x"
    assert budget.used == 0
