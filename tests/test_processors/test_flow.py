"""Stream queues keep the events already delivered when faust resumes flow; an explicit clear (faust
calls it when partitions are revoked) still empties them."""

import asyncio

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from processors.flow import KeepQueuesOnResume


def _queue_after_resume(event_type: type[FlowControlEvent]) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        flow = event_type()
        queue: FlowControlQueue[int] = FlowControlQueue(maxsize=10, flow_control=flow, clear_on_resume=True)
        flow.resume()
        for n in range(3):
            await queue.put(n)
        flow.resume()  # faust does this again at the end of table recovery
        kept = queue.qsize()
        flow.clear()
        return kept, queue.qsize()
    return asyncio.run(run())


def test_resume_keeps_delivered_events_and_clear_still_empties() -> None:
    assert _queue_after_resume(KeepQueuesOnResume) == (3, 0)


def test_mode_resume_empties_the_queue_which_is_why_we_replace_it() -> None:
    assert _queue_after_resume(FlowControlEvent) == (0, 0)
