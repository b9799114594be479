"""Tasks whose names carry characters a terminal would act on: C1 controls, bidi overrides,
zero-width characters, DEL."""

from __future__ import annotations

import asyncio

from target_kit import signal_ready, until_stopped

NAMES = [
    "csi\x9b31mred",
    "rtl\u202eevil",
    "zero\u200bwidth",
    "del\x7fete",
    "iso\u2066late\u2069",
    "line\u2028sep",
    "bom\ufeffmark",
    "c1\x85nel",
]


async def main() -> None:
    for name in NAMES:
        asyncio.create_task(asyncio.sleep(3600), name=name)
    signal_ready()
    await until_stopped()


asyncio.run(main())
