"""Two trio tasks that deadlock on two trio Locks: `transfer-1` holds `a` and waits for `b`,
`transfer-2` holds `b` and waits for `a`. Killed by the test (it never ends by itself)."""

from __future__ import annotations

import trio
from target_kit import signal_ready


async def main() -> None:
    a, b = trio.Lock(), trio.Lock()

    async def transfer_1() -> None:
        async with a:
            await trio.sleep(0.05)
            async with b:
                pass

    async def transfer_2() -> None:
        async with b:
            await trio.sleep(0.05)
            async with a:
                pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(transfer_1, name="transfer-1")
        nursery.start_soon(transfer_2, name="transfer-2")
        await trio.sleep(0.2)
        signal_ready()


trio.run(main)
