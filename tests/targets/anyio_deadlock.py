"""Two anyio tasks that deadlock on two anyio Locks: `transfer-1` holds `a` and waits for
`b`, `transfer-2` holds `b` and waits for `a`."""

from __future__ import annotations

import anyio
from target_kit import signal_ready


async def main() -> None:
    a, b = anyio.Lock(), anyio.Lock()

    async def transfer_1() -> None:
        async with a:
            await anyio.sleep(0.05)
            async with b:
                pass

    async def transfer_2() -> None:
        async with b:
            await anyio.sleep(0.05)
            async with a:
                pass

    async with anyio.create_task_group() as group:
        group.start_soon(transfer_1, name="transfer-1")
        group.start_soon(transfer_2, name="transfer-2")
        await anyio.sleep(0.2)
        signal_ready()


anyio.run(main)
