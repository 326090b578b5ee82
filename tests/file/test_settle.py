"""settle() (python/ringlet/_fdio.py): a write that reached the engine is
awaited to its end even when the awaiting task is cancelled, without a
second future: the task resumes in the loop's turn right after the one that
resolved the write (asyncio.shield's outer future took one more)."""

import asyncio

from ringlet._fdio import settle


async def turns_until(task, ticks):
    """Counts the loop's turns (ticks[0]) until task is done."""
    while not task.done():
        await asyncio.sleep(0)
        ticks[0] += 1


def test_the_task_resumes_the_turn_after_the_result(run):
    async def main():
        fut = asyncio.get_running_loop().create_future()
        ticks = [0]
        resumed = []

        async def waiter():
            n, cancel = await settle(fut)
            resumed.append(ticks[0])
            return n, cancel

        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(0)  # the waiter is suspended in settle
        fut.set_result(7)
        set_at = ticks[0]
        await turns_until(task, ticks)
        return task.result(), resumed[0] - set_at

    result, turns = run(main())
    assert result == (7, None)
    assert turns == 0  # woken by the future's own callback, in the next turn: no second future


def test_a_cancel_waits_for_the_end_and_is_told_once(run):
    async def main():
        fut = asyncio.get_running_loop().create_future()
        told = []

        async def waiter():
            n, cancel = await settle(fut, told.append)
            return n, type(cancel).__name__

        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(0)
        task.cancel()
        task.cancel()  # told once
        for _ in range(5):  # the waiter stays suspended: the write has not ended
            await asyncio.sleep(0)
        waiting = not task.done() and not fut.cancelled()
        fut.set_result(3)
        return waiting, await task, told == [fut]

    waiting, result, told_once = run(main())
    assert waiting
    assert result == (3, "CancelledError")  # the count, and the cancel to raise once counted
    assert told_once


async def outcome(cancel_task, end):
    """How settle() over a pending future ends: its result, or the name of
    what it raised.  cancel_task: the awaiting task is cancelled first;
    end(fut) then ends the future."""
    fut = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(settle(fut))
    await asyncio.sleep(0)  # suspended in settle
    if cancel_task:
        task.cancel()
        await asyncio.sleep(0)
    end(fut)
    try:
        return await task
    except BaseException as exc:
        return type(exc).__name__


def test_a_failed_write_raises_its_error_or_the_cancel(run):
    def fail(fut):
        fut.set_exception(OSError(28, "No space left on device"))

    assert run(outcome(False, fail)) == "OSError"
    assert run(outcome(True, fail)) == "CancelledError"  # nothing was written: the cancel is the answer


def test_a_cancelled_future_is_not_waited_for(run):
    # The engine cancels its futures when it shuts down: nothing will end them.
    assert run(outcome(False, lambda fut: fut.cancel())) == "CancelledError"
