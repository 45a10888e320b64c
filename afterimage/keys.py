"""Every Redis key afterimage uses, in one place. Performs no I/O.

    ai:t:{provider}:{task_id}     hash    the task record (field names in ledger.FIELDS)
    ai:due:{provider}             zset    pending tasks, scored by their next poll time
    ai:s:{state}:{provider}       zset    tasks in every other state, scored by last change
    ai:deadline                   zset    "{provider}\\n{task_id}" unfinished, by link expiry
    ai:opened                     hash    creation time (to 10 s) -> how many tasks created then
                                          are not yet archived (pending, queued, archive_failed)
    ai:metrics                    hash    counters every process adds to (afterimage.metrics)
    ai:outcomes:{day}             hash    "{10-minute slot}|{state}" -> tasks that ended archived,
                                          archive_failed, generation_failed or expired then
                                          (day = unix time // 86400; kept 25 h; lua/transition.lua)
    ai:inbox                      stream  tasks whose archive job must be created (dispatcher input)
    ai:inbox:malformed            stream  inbox entries the dispatcher could not read, set aside
    ai:events                     stream  completion events not yet delivered (lua/transition.lua)
    ai:events:later               zset    events whose delivery failed, by their next attempt
    ai:heartbeat                  hash    component -> "<time> <host>-<pid>" of its newest beat
    ai:lock:{provider}:{task_id}  string  held while one archive job works on the task
    ai:rate:{provider}            string  the poller's shared rate-limit state
    ai:pause:{provider}           string  set while a provider asked us to back off (429)
    ai:rescue                     string  held by the one worker looking for stranded tasks
    ai:probe:{provider}           string  after a 429: one query at a time until one succeeds
    ai:learn:{provider}[:{model}] hash    completion ages seen, binned (afterimage.poll_plan)
"""

from __future__ import annotations

PREFIX = "ai:"
INBOX = PREFIX + "inbox"
DISPATCH_GROUP = "dispatch"
MALFORMED = INBOX + ":malformed"
EVENTS = PREFIX + "events"
EVENTS_GROUP = "deliver"
EVENTS_LATER = EVENTS + ":later"
HEARTBEATS = PREFIX + "heartbeat"
DEADLINES = PREFIX + "deadline"
RESCUE_LOCK = PREFIX + "rescue"
OPEN = PREFIX + "opened"
METRICS = PREFIX + "metrics"
QUEUES = ("afterimage-urgent", "afterimage", "afterimage-notify")  # RQ queues, taken in this order


def task(provider: str, task_id: str) -> str:
    return f"{PREFIX}t:{provider}:{task_id}"


def due(provider: str) -> str:
    return f"{PREFIX}due:{provider}"


def state_index(state: str, provider: str) -> str:
    return f"{PREFIX}s:{state}:{provider}"


def lock(provider: str, task_id: str) -> str:
    return f"{PREFIX}lock:{provider}:{task_id}"


def rate(provider: str) -> str:
    return f"{PREFIX}rate:{provider}"


def pause(provider: str) -> str:
    return f"{PREFIX}pause:{provider}"


def probe(provider: str) -> str:
    return f"{PREFIX}probe:{provider}"


def outcomes(day: int) -> str:
    """The per-10-minute counts of tasks ending in a final or failed state on unix day `day`."""
    return f"{PREFIX}outcomes:{day}"


def deadline_task(member: bytes) -> tuple[str, str]:
    """(provider, task_id) of an `ai:deadline` member ("{provider}\\n{task_id}", made by
    lua/transition.lua)."""
    provider, task_id = member.decode().split("\n", 1)
    return provider, task_id


def learned(provider: str, model: str | None = None) -> str:
    """The histogram of completion ages of a provider, or of one of its models."""
    return f"{PREFIX}learn:{provider}" + (f":{model}" if model else "")
