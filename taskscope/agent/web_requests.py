"""The web request a task serves, for servers that run each request in a task of its own: uvicorn
(`RequestResponseCycle.run_asgi`, its websocket protocols' `run_asgi`), aiohttp
(`RequestHandler._handle_request`) and hypercorn on asyncio (`_handle`); and a task that runs
Django's request handling (`BaseHandler.get_response_async`), under any ASGI server. Read from
the server's own objects (the ASGI scope, the parsed request line, Django's request) on the
agent's thread, never through a property or the program's code: the method and the path,
without its query string (which may carry a secret), and the route the application matched
(Starlette, FastAPI, aiohttp.web, Django), by its path template."""

from __future__ import annotations

import gc
import sys
from types import CodeType, CoroutineType, FrameType, FunctionType
from typing import Any, Final

from taskscope.protocol import WireRequest

#: `Py_TPFLAGS_HEAPTYPE`: a class made by a class statement (its attributes may run Python).
_HEAP_TYPE = 1 << 9
#: How deep a running stack is searched for the request's frame.
MAX_DEPTH = 200
#: A path longer than this is cut: a record is kept per live task.
PATH_LIMIT = 200

#: Where a request-serving coroutine keeps its request, by the server: uvicorn's
#: `run_asgi(self)` (the ASGI scope is `self.scope`), aiohttp's `_handle_request(self,
#: request, ...)`, hypercorn's `_handle(app, config, scope, ...)`: (the local's index among
#: the arguments, its name, how to read it).
_UVICORN: Final = (0, "self", "uvicorn")
_AIOHTTP: Final = (1, "request", "aiohttp")
_HYPERCORN: Final = (2, "scope", "scope")
#: Django's `BaseHandler.get_response_async(self, request)`: not a task's own coroutine under
#: most servers (uvicorn's `run_asgi` awaits it, some calls down), so also looked for down the
#: chain of the coroutines a request task awaits (`_django_request`).
_DJANGO: Final = (1, "request", "django")
#: How far down a task's chain of awaited coroutines Django's handling is looked for.
CHAIN_DEPTH = 64
#: The request-serving coroutines' codes -> where their request is (above), built again
#: when modules were imported since (`_request_codes`).
_CODES: dict[CodeType, tuple[int, str, str]] = {}
_MODULES_SEEN = [0]
#: The code of Django's `get_response_async`, once Django's handlers are imported.
_DJANGO_HANDLING: list[CodeType] = []


def request_of(coro: Any) -> WireRequest | None:
    """`{"method": "GET", "path": "/report"}` for a task whose coroutine serves a request
    (a websocket's method is `WEBSOCKET`), else None."""
    if type(coro) is not CoroutineType or coro.cr_running:
        return None  # a running frame's locals are read from its stack (`request_in_stack`)
    code = coro.cr_code
    codes = _request_codes()
    where = codes.get(code)
    if where is None:
        # A task of Django's own (its handling run in a task of its own, under a server
        # this module does not know)
        return _django_request(coro) if _DJANGO_HANDLING else None
    request = _read(where[2], _local_at(coro, code, where[0]))
    if request is not None and "route" not in request and _DJANGO_HANDLING:
        # The ASGI scope says no route: Django keeps the one it matched on its request
        django = _django_request(coro)
        route = django.get("route") if django is not None else None
        if route is not None:
            return _request(request["method"], request["path"], route)
    return request


def _django_request(coro: Any) -> WireRequest | None:
    """The request of Django's handling found down the chain of coroutines `coro` awaits
    (suspended ones only: their `cr_await` is what each waits on)."""
    code = _DJANGO_HANDLING[0]
    depth = 0
    while type(coro) is CoroutineType and depth < CHAIN_DEPTH:
        if coro.cr_code is code:
            return _read("django", _local_at(coro, code, _DJANGO[0]))
        coro, depth = coro.cr_await, depth + 1
    return None


def request_in_stack(top: FrameType | None) -> WireRequest | None:
    """The request the frames of a thread serve (`top` its innermost frame): a step of a
    request task that holds its loop, seen by the watchdog while it runs."""
    codes = _request_codes()
    if not codes:
        return None
    frame, depth = top, 0
    while frame is not None and depth < MAX_DEPTH:
        where = codes.get(frame.f_code)
        if where is not None:
            return _read(where[2], _local(frame, where[1]))
        frame, depth = frame.f_back, depth + 1
    return None


def _read(how: str, holder: Any) -> WireRequest | None:
    """The request `holder` (a server's object, as `_CODES` says) serves. Never raises: a
    server's version whose objects are not as read here (a slot left unset, a path that is
    not text) leaves a task without its request, and the look goes on."""
    try:
        if how == "uvicorn":  # `self`, which keeps the ASGI scope
            return _from_scope(_plain_attribute(holder, "scope"))
        if how == "scope":
            return _from_scope(holder)
        if how == "django":
            return _from_django(holder)
        return _from_aiohttp(holder)
    except Exception:
        return None


def _local(frame: FrameType, name: str) -> Any:
    try:
        return frame.f_locals.get(name)
    except Exception:
        return None


def _request_codes() -> dict[CodeType, tuple[int, str, str]]:
    if len(sys.modules) == _MODULES_SEEN[0]:
        return _CODES
    _MODULES_SEEN[0] = len(sys.modules)
    for name in (
        "uvicorn.protocols.http.h11_impl",
        "uvicorn.protocols.http.httptools_impl",
        "uvicorn.protocols.websockets.websockets_impl",
        "uvicorn.protocols.websockets.wsproto_impl",
        "uvicorn.protocols.websockets.websockets_sansio_impl",
    ):
        module = sys.modules.get(name)
        for value in list(vars(module).values()) if module is not None else ():
            # The class's own dict: no metaclass of an imported name gets to run.
            run = vars(value).get("run_asgi") if type(value) is type else None
            if type(run) is FunctionType:
                _CODES[run.__code__] = _UVICORN
    web_protocol = sys.modules.get("aiohttp.web_protocol")
    handler_class = vars(web_protocol).get("RequestHandler") if web_protocol is not None else None
    handler = vars(handler_class).get("_handle_request") if type(handler_class) is type else None
    if type(handler) is FunctionType:
        _CODES[handler.__code__] = _AIOHTTP
    hypercorn = sys.modules.get("hypercorn.asyncio.task_group")
    handle = vars(hypercorn).get("_handle") if hypercorn is not None else None
    if type(handle) is FunctionType:
        _CODES[handle.__code__] = _HYPERCORN
    django = sys.modules.get("django.core.handlers.base")
    base = vars(django).get("BaseHandler") if django is not None else None
    handling = vars(base).get("get_response_async") if type(base) is type else None
    if type(handling) is FunctionType:
        _CODES[handling.__code__] = _DJANGO
        _DJANGO_HANDLING[:] = [handling.__code__]
    return _CODES


def _local_at(coro: Any, code: CodeType, index: int) -> Any:
    """Local variable `index` of a suspended coroutine's frame, from the collector's view of
    it (its function, its code, then its locals in order: see `awaiting.first_local`),
    without making a frame object. Arguments are always set, so the index holds."""
    try:
        refs = gc.get_referents(coro)
    except Exception:
        return None
    for position in range(1, len(refs) - 1 - index):
        if refs[position] is code and type(refs[position - 1]) is FunctionType:
            return refs[position + 1 + index]
    return None


def _plain_attribute(obj: Any, name: str) -> Any:
    """`obj.name` when it is a plain instance attribute: no property, no `__getattr__`, no
    class of the program's that could run code."""
    kind: Any = type(obj)
    if not _plain_lookup(kind):
        return None
    for klass in kind.__mro__:
        found = vars(klass).get(name)
        if found is not None and type(found) is not _SLOT:
            return None  # a property, or a class attribute
    return getattr(obj, name, None)


def _plain_lookup(kind: Any) -> bool:
    """Whether looking an attribute up on an instance of `kind` runs no code of the
    program's: no `__getattribute__` or `__getattr__` of a class statement's (a built-in
    base's, such as dict's, is C)."""
    for klass in kind.__mro__:
        own = vars(klass)
        if ("__getattribute__" in own or "__getattr__" in own) and klass.__flags__ & _HEAP_TYPE:
            return False
    return True


class _Slotted:
    __slots__ = ("value",)


#: The type of a `__slots__` entry on its class: reading it runs no code of the program's.
_SLOT = type(_Slotted.__dict__["value"])


class _WithDict:
    pass


#: The type of the `__dict__` entry of a class statement's class (reading it runs no code).
_DICT_DESCRIPTOR = type(_WithDict.__dict__["__dict__"])


def _from_scope(scope: Any) -> WireRequest | None:
    if type(scope) is not dict:
        return None
    kind, path = scope.get("type"), scope.get("path")
    if type(path) is not str:
        return None
    # The route the app matched, once it has (Starlette and FastAPI put their route
    # object in the scope): its path template, `/items/{item_id}`.
    route = scope.get("route")
    template = _plain_attribute(route, "path") if route is not None else None
    if kind == "http":
        method = scope.get("method")
        return _request(method, path, template) if type(method) is str else None
    if kind == "websocket":
        return _request("WEBSOCKET", path, template)
    return None


def _from_aiohttp(request: Any) -> WireRequest | None:
    message = _plain_attribute(request, "_message")
    if isinstance(message, tuple) and len(message) >= 2:  # the pure-Python parser's
        method, path = message[0], message[1]
    elif message is not None and not type(message).__flags__ & _HEAP_TYPE:
        # its C parser's (compiled: reading its fields runs no Python code)
        method, path = getattr(message, "method", None), getattr(message, "path", None)
    else:
        return None
    if type(method) is not str or type(path) is not str:
        return None
    return _request(method, path.split("?", 1)[0], _aiohttp_route(request))


def _aiohttp_route(request: Any) -> Any:
    """The path template of the route an aiohttp request matched (`/items/{id}`), once the
    application has matched one: the resource's own pattern, not its `canonical` property."""
    match_info = _instance_value(request, "_match_info")
    route = _plain_attribute(match_info, "_route") if match_info is not None else None
    resource = _plain_attribute(route, "_resource") if route is not None else None
    if resource is None:
        return None
    template = _plain_attribute(resource, "_formatter")  # a resource with variables
    return template if template is not None else _plain_attribute(resource, "_path")


def _from_django(request: Any) -> WireRequest | None:
    """Django's request (`HttpRequest`): its method and path (without the query string), and
    once its URLconf resolved it, the matched route (`resolver_match.route`, relative to the
    root: `items/<int:item_id>` is said `/items/<int:item_id>`; a regular expression's as it
    is written)."""
    method, path = _instance_value(request, "method"), _instance_value(request, "path")
    if type(method) is not str or type(path) is not str:
        return None
    match = _instance_value(request, "resolver_match")
    route = _instance_value(match, "route") if match is not None else None
    if type(route) is str and not route.startswith(("/", "^")):
        route = "/" + route
    return _request(method, path, route)


def _instance_value(obj: Any, name: str) -> Any:
    """`obj.name` from the instance's own `__dict__`, where its class also has a default
    for it (which `_plain_attribute` takes for a class attribute): no property, no
    `__getattr__` runs."""
    kind: Any = type(obj)
    if not _plain_lookup(kind):
        return None
    for klass in kind.__mro__:
        found = vars(klass).get("__dict__")
        if found is not None:
            if type(found) is not _DICT_DESCRIPTOR:
                return None  # a `__dict__` of the program's making
            break
    try:
        own = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return None
    return own.get(name) if type(own) is dict else None


def _request(method: str, path: str, route: Any = None) -> WireRequest:
    request: WireRequest = {"method": method[:16], "path": path[:PATH_LIMIT]}
    if type(route) is str and route:
        request["route"] = route[:PATH_LIMIT]
    return request
