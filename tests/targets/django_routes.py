"""A Django app under uvicorn (h11): async views at `items/<int:item_id>` (waits for an hour)
and `^orders/(?P<number>[0-9]+)/pay$` (waits on a lock held by a task named `lock-holder`),
two requests to the first (`/items/1`, `/items/2?token=secret`) and one to the second. Also a
task named `direct-django` that runs Django's ASGI application itself, as a server this
program's tools do not know would (`/items/9`, in a task whose coroutine is Django's). Signals
ready once the four requests wait in their views. Exits at once when stopped."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import django
import uvicorn
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path, re_path
from target_kit import free_port, get, send, signal_ready, until_stopped

waiting: list[str] = []
lock = asyncio.Lock()


async def item(request: HttpRequest, item_id: int) -> HttpResponse:
    waiting.append("item")
    await asyncio.sleep(3600)
    return HttpResponse("late")


async def pay(request: HttpRequest, number: str) -> HttpResponse:
    waiting.append("pay")
    async with lock:
        return HttpResponse("paid")


urlpatterns = [
    path("items/<int:item_id>", item),
    re_path(r"^orders/(?P<number>[0-9]+)/pay$", pay),
]

settings.configure(
    DEBUG=False,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="not-a-secret",
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402  (needs the settings)

application = get_asgi_application()


async def hold_lock() -> None:
    async with lock:
        await asyncio.sleep(3600)


async def direct() -> None:
    """Django's application called as an ASGI server calls it, in this task."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/items/9",
        "raw_path": b"/items/9",
        "query_string": b"",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    sent = False
    forever = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await forever.wait()
        return {"type": "http.disconnect"}

    async def reply(message: dict[str, Any]) -> None:
        pass

    await application(scope, receive, reply)


async def main() -> None:
    holder = asyncio.create_task(hold_lock(), name="lock-holder")
    port = free_port()
    config = uvicorn.Config(application, port=port, http="h11", log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(), name="uvicorn")
    while not server.started:
        await asyncio.sleep(0.01)
    clients = [
        await send(port, get(path))
        for path in ("/items/1", "/items/2?token=secret", "/orders/4/pay")
    ]
    running = asyncio.create_task(direct(), name="direct-django")
    while sorted(waiting) != ["item"] * 3 + ["pay"]:
        await asyncio.sleep(0.01)
    signal_ready()
    await until_stopped()
    # At once: the server would wait for the requests, which wait for an hour.
    os._exit(0 if clients and serving and holder and running else 1)


asyncio.run(main())
