"""Short, safe text for task results and exceptions.

These run inside the monitored process, on its loop thread, so they never call code of the
application: no user `__repr__` or `__str__`, only values of built-in types are shown.
"""

from __future__ import annotations

from typing import Any

MAX_TEXT = 200
_PLAIN_TYPES = (bool, int, float, complex, type(None))
_SIZED_TYPES = (list, tuple, dict, set, frozenset, bytearray)


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_repr(value: Any, limit: int = MAX_TEXT) -> str:
    """repr() for built-in scalar types, a type-and-size description for anything else."""
    kind = type(value)
    if kind is int and value.bit_length() > 600:
        # repr() of an int over 4,300 digits raises (sys.set_int_max_str_digits), and a long
        # one costs the loop thread: its size says enough.
        return f"<int of {value.bit_length()} bits>"
    if kind in _PLAIN_TYPES:
        return _clip(repr(value), limit)
    if kind is str or kind is bytes:
        return _clip(repr(value[: limit + 1]), limit)
    if kind in _SIZED_TYPES:
        return f"<{kind.__name__} of {len(value)}>"
    return f"<{kind.__module__}.{kind.__qualname__} object>"


def exception_summary(exc: BaseException) -> str:
    """`ValueError('bad row')`, reading only built-in argument values."""
    kind = type(exc)
    if kind.__str__ is BaseException.__str__ or kind.__module__ == "builtins":
        args = ", ".join(safe_repr(arg, 80) for arg in exc.args[:3])
        return _clip(f"{kind.__qualname__}({args})")
    return f"{kind.__qualname__}(…)"


def result_summary(value: Any) -> str:
    return safe_repr(value)


_MESSAGE_ARG_TYPES = frozenset({str, int, float, bool, type(None), bytes})
#: id(exception class) -> (the class, the name a traceback gives it, how its message is
#: made: 0 by the program's own __str__ (not read), 1 by a built-in one, 2 as OSError does
#: (its filenames too)). One lookup per failed task instead of a walk of its class's MRO.
_KINDS: dict[int, tuple[type, str, int]] = {}


def _kind_of(kind: type) -> tuple[type, str, int]:
    known = _KINDS.get(id(kind))
    if known is not None and known[0] is kind:
        return known
    module = kind.__module__
    qualname = kind.__qualname__
    name = qualname if module in ("builtins", "__main__") else f"{module}.{qualname}"
    owner = next((base for base in kind.__mro__ if "__str__" in base.__dict__), object)
    how = 0
    if owner.__module__ == "builtins":
        how = 2 if issubclass(kind, OSError) else 1
    if len(_KINDS) > 1000:
        _KINDS.clear()
    known = _KINDS[id(kind)] = (kind, name, how)
    return known


def exception_line(exc: BaseException) -> str:
    """The last line of a traceback, `ValueError: bad row`, as Python prints it when the
    message can be made without the program's code: the exception's `__str__` must be a
    built-in one, applied to built-in values. Otherwise only the type is told."""
    _kind, name, how = _kind_of(type(exc))
    if not how:
        return f"{name}: <message not read: custom __str__>"
    args = exc.args
    if type(args) is not tuple:
        return f"{name}: <message not read>"
    plain = _MESSAGE_ARG_TYPES
    for arg in args:
        if type(arg) not in plain:
            shown = ", ".join(safe_repr(arg, 80) for arg in args[:3])
            return f"{name}({shown})"
    if how == 2:
        error: Any = exc
        if type(error.filename) not in plain or type(error.filename2) not in plain:
            return f"{name}({', '.join(safe_repr(arg, 80) for arg in args[:3])})"
    message = str(exc)
    return _clip(f"{name}: {message}" if message else name, 1000)
