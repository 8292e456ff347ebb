"""The task lifecycle: the states a task is in, and the transitions between them.

A task has a public :class:`TaskStatus` (what clients see) and an internal
:class:`TaskPhase` (what the gateway is doing with it). Every change of either is one
named transition, a method of the store (:class:`vidgate.store.tasks.TaskTransitions`)
with its own SQL, applied only from the states it names, so that applying it twice, or
racing it against another transition, changes nothing the second time:

===================  ==========================  ===========================================
transition           from                        to
===================  ==========================  ===========================================
``create_task``      --                          queued / submitting (charged)
``try_channel``      submitting                  submitting, on another channel and job
``submitted``        submitting                  polling (the vendor's handle stored)
``abandon``          submitting                  failed, hidden, refunded (no vendor took it)
``progressed``       polling                     queued or in_progress, with progress
``retry_later``      polling or fetching         the same, due later (backoff, failures)
``postpone``         any unfinished              the same, due at another time
``make_due``         any unfinished              the same, due now (a callback's hint)
``result_ready``     polling                     in_progress / fetching (usage settled)
``complete``         fetching                    completed (media stored, charge settled)
``fail``             any unfinished              failed (refunded)
``cancel``           any unfinished              cancelled (refunded, settled or kept)
``request_cancel``   any unfinished              the same, with the cancel recorded
``hide``             finished                    hidden, media gone (a client's delete)
``media_deleted``    finished                    media gone (retention)
===================  ==========================  ===========================================

The finishing transitions (``complete``, ``fail``, ``cancel``, ``abandon``) move a task to
a terminal status exactly once and bill it in the same transaction; they answer False
when the task had already finished (then nothing is billed again).
"""

from __future__ import annotations

import enum


class TaskStatus(enum.StrEnum):
    """The public status of a task (``status`` in the API). A ``StrEnum``: it is its
    value wherever it is formatted, stored or compared."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskPhase(enum.StrEnum):
    """What the gateway is doing with a task (never shown to clients)."""

    #: The submit engine is offering it to channels (the client may still be waiting).
    SUBMITTING = "submitting"
    #: A vendor has it; the worker polls its status.
    POLLING = "polling"
    #: The vendor finished; the worker copies the result into media storage.
    FETCHING = "fetching"
    #: Finished (completed, failed or cancelled).
    DONE = "done"


#: The statuses a task never leaves.
TERMINAL: tuple[str, ...] = (TaskStatus.COMPLETED.value, TaskStatus.FAILED.value, TaskStatus.CANCELLED.value)
#: The statuses of a task still being worked on.
ACTIVE: tuple[str, ...] = (TaskStatus.QUEUED.value, TaskStatus.IN_PROGRESS.value)
