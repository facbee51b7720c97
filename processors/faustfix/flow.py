"""Stream queues that keep their events when faust resumes flow.

Upstream (faust-streaming 0.15.3, mode-streaming 0.7.1): faust creates every stream channel's queue
with `clear_on_resume=True` (faust/channels.py:134-146), and mode's `FlowControlEvent.resume()` empties
all such queues (mode/utils/queues.py:96-101). faust resumes flow several times during table recovery
after an assignment, the last time in `Recovery.on_recovery_completed` right *after* it resumed the
stream partitions and sought them to the committed offsets (faust/tables/recovery.py:650-660). The
fetch loop is already running then (it started with the changelog recovery, recovery.py:447-452), so
events it delivers in that window, with the consumer position moved past them, are thrown away: nothing
processes them, nothing acks them, and the committed offset stands still behind a position at the end
offset. That is the stall seen after a worker restart (one partition, lag > 0, "ready", nothing fetched
for minutes); under CPU load the window is wider.

Queues are still emptied where it matters: faust calls `flow_control.clear()` itself when partitions
are revoked (faust/app/base.py:1815-1823), and an event left from an older assignment is skipped by the
stream's generation check (faust/_cython/streams.pyx `_prepare_event`). An event delivered twice (kept
here, and fetched again after the seek) is processed twice, which every effect of the worker tolerates.
Patched: `FlowControlEvent.resume` (its private events `_suspend`/`_resume`), and faust's
`App.flow_control`, which builds the event (faust/app/base.py:2167-2174; see `faustfix.app`).
"""

from mode.utils.queues import FlowControlEvent


class KeepQueuesOnResume(FlowControlEvent):
    """Resume production into the stream queues without emptying them."""

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()
