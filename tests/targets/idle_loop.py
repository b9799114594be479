"""A loop with no task pending: its tasks finished (one failed) before it was signalled
ready, and it runs on callbacks alone (`loop.run_forever`, a timer that checks for the stop
file), as an event-driven server between requests may."""

from __future__ import annotations

import asyncio

from target_kit import signal_ready, stop_requested


async def short(number: int) -> int:
    await asyncio.sleep(0.001 * number)
    if number == 3:
        raise ValueError("bad row")
    return number


def check_stop(loop: asyncio.AbstractEventLoop) -> None:
    if stop_requested():
        loop.stop()
    else:
        loop.call_later(0.05, check_stop, loop)


def main() -> None:
    loop = asyncio.new_event_loop()
    tasks = [loop.create_task(short(number)) for number in range(5)]
    loop.run_until_complete(asyncio.wait(tasks))
    del tasks
    loop.call_soon(signal_ready)
    loop.call_soon(check_stop, loop)
    loop.run_forever()
    loop.close()


main()
