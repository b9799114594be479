"""What gdb is told to do in the target: the command files that save the main thread's
registers, call functions of the target through a trampoline, run or queue the code, and put
everything back.

Function calls are made by hand, not with gdb's `call`: gdb 13 can't write the x86 extended
register state on CPUs with AMX (the kernel expects a larger XSAVE buffer), so every `call` fails
there after it has already run.  We only ever write general-purpose registers and memory: the
thread is pointed at a 16-byte trampoline written over the executable's entry point (`_start`
never runs again), which does `cld; fxsave [rbx]; call rax; fxrstor [rbx]; int3`.  The fxsave
keeps the SSE/x87 state of an interrupted thread intact; the general registers, including
`orig_rax` (so an interrupted system call restarts as the kernel intended), are restored by gdb
afterwards, and the entry bytes are put back before gdb detaches.  Only x86-64 is supported.

The functions are called at addresses taskscope reads from the dynamic symbol tables of the
target's mapped files (`function_addresses`), so gdb needs no symbols of the shared libraries
and reads none while the process is stopped.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from taskscope.attach.elf import exported_functions
from taskscope.attach.errors import InjectionError
from taskscope.attach.roots import target_file
from taskscope.attach.stub import GIL_HELD, STUB_SIZE, stub_code
from taskscope.attach.syscalls import (
    EINTR,
    ERESTART_RESTARTBLOCK,
    ERESTARTNOHAND,
    ERESTARTNOINTR,
    ERESTARTSYS,
    SAFE_SYSCALLS,
    SYS_FUTEX,
)
from taskscope.attach.target import LIBPYTHON, TargetInfo, read_maps

# cld; fxsave64 [rbx]; call rax; fxrstor64 [rbx]; int3, then syscall; int3  (+ padding)
TRAMPOLINE = bytes.fromhex("fc 48 0f ae 03 ff d0 48 0f ae 0b cc 0f 05 cc cc")
TRAMPOLINE_RETURN = 12  # rip after the first int3
SYSCALL_AT = 12  # a system call made with the registers as they are (mmap, munmap)
SYSCALL_RETURN = 15  # rip after the int3 that follows it

MAGIC_SIZE = 16
GDB_REGISTERS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
)  # fmt: skip


#: The functions the gdb script calls, by the name the script gives them.
GDB_FUNCTIONS = (
    "Py_IsInitialized", "PyGILState_Check", "PyGILState_Ensure", "PyGILState_Release",
    "PyRun_SimpleString", "Py_AddPendingCall", "mmap", "munmap", "__errno_location",
    "shmget", "shmat", "shmctl", "shmdt",
)  # fmt: skip


def function_addresses(info: TargetInfo) -> dict[str, int] | None:
    """Where the functions the gdb script calls are in the target, from the dynamic symbol
    tables of its mapped files (the executable, libpython, libc): gdb then needs no symbols
    and reads none while the process is stopped. None when one can't be found this way."""
    finalizing = "Py_IsFinalizing" if info.version >= (3, 13) else "_Py_IsFinalizing"
    wanted = {name.encode() for name in (*GDB_FUNCTIONS, finalizing)}
    try:
        maps = read_maps(info.pid)
    except OSError:
        return None
    starts: dict[str, int] = {}
    for mapping in maps:
        if mapping.offset == 0 and mapping.path not in starts:
            starts[mapping.path] = mapping.start
    addresses: dict[bytes, int] = {}
    for path, start in starts.items():
        if path.endswith(" (deleted)") or not wanted - addresses.keys():
            continue
        name = os.path.basename(path)
        if not (path == info.executable or LIBPYTHON.search(name) or name.startswith("libc.")):
            continue
        read = exported_functions(target_file(info.pid, path), wanted - addresses.keys())
        if read is None:
            continue
        base, found = read
        for symbol, value in found.items():
            addresses[symbol] = start - base + value
    if wanted - addresses.keys():
        return None
    named = {symbol.decode(): address for symbol, address in addresses.items()}
    named["finalizing"] = named.pop(finalizing)
    return named


def entry_point(pid: int) -> int:
    auxv = Path(f"/proc/{pid}/auxv").read_bytes()
    for offset in range(0, len(auxv) - 15, 16):
        key, value = struct.unpack_from("<QQ", auxv, offset)
        if key == 9:  # AT_ENTRY
            return int(value)
    raise InjectionError(f"process {pid} has no entry point in its auxv: can't inject into it")


def _call_command(arguments: int) -> list[str]:
    """`ts_callN FUNCTION ARG1..ARGN`: one call through the trampoline, which writes only the
    registers it needs (rbx, rsp and orig_rax are set once, before the first call, and the
    calls leave them so); `$ts_ret` is what it returned."""
    registers = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")[:arguments]
    return [
        f"define ts_call{arguments}",
        "  if $ts_ok",
        "    set $rax = $arg0",
        *(f"    set ${register} = $arg{n + 1}" for n, register in enumerate(registers)),
        "    set $rip = $ts_entry",
        "    continue",
        "    set $ts_ret = (long)$rax",
        f"    if (long)$rip != $ts_entry + {TRAMPOLINE_RETURN}",
        "      set $ts_ok = 0",
        '      printf "TS-ERROR unexpected stop at %#lx\\n", (long)$rip',
        "    end",
        "  else",
        "    set $ts_ret = -1",
        "  end",
        "end",
    ]


@dataclass(frozen=True, slots=True)
class GdbScripts:
    """What gdb runs before it attaches (`prelude`: settings, addresses, commands, all of it
    done while the process still runs) and once attached (`script`, then `gdb_restore_script`).
    `stub` is the machine code and source the script writes into the target in one piece
    (`stub_path`), when the functions' addresses are known."""

    prelude: str
    script: str
    stub: bytes | None = None


def gdb_scripts(
    info: TargetInfo,
    payload_path: str,
    payload: bytes,
    *,
    queue: bool,
    addresses: dict[str, int] | None = None,
    stub_path: str | None = None,
) -> GdbScripts:
    """The gdb command files: save registers, install the trampoline, decide, run or queue.
    With `addresses` (see `function_addresses`) they name no symbol, and a main thread parked in
    a system call without the GIL runs the code in one stop (`stub`), written at `stub_path`."""
    entry = entry_point(info.pid)
    tramp_lo, tramp_hi = struct.unpack("<QQ", TRAMPOLINE)
    finalizing = "Py_IsFinalizing" if info.version >= (3, 13) else "_Py_IsFinalizing"
    safe = _one_of("$ts_s_orig_rax", SAFE_SYSCALLS.values())
    payload_size = len(payload)
    map_size = (payload_size + 4095) & ~4095
    prelude = [
        "set confirm off",
        "set pagination off",
        "set width 0",
        "set height 0",
        "handle all nostop noprint pass",
        "handle SIGINT nostop noprint pass",
        "set $ts_saved = 0",
        "set $ts_tramp = 0",
        "set $ts_mode = 0",
        "set $ts_ok = 1",
        f"set $ts_entry = {entry:#x}",
    ]
    functions = {
        "isinit": "Py_IsInitialized",
        "finalizing": finalizing,
        "gilcheck": "PyGILState_Check",
        "ensure": "PyGILState_Ensure",
        "release": "PyGILState_Release",
        "run": "PyRun_SimpleString",
        "pending": "Py_AddPendingCall",
        "mmap": "mmap",
        "munmap": "munmap",
        "errno": "__errno_location",
        "shmget": "shmget",
        "shmat": "shmat",
        "shmctl": "shmctl",
        "shmdt": "shmdt",
    }
    # Known addresses are set before the process is stopped; symbols only once attached.
    lines = ["set $ts_pc = $pc"]  # fails (and ends the script) when nothing is attached
    by_variable: dict[str, int] = {}
    for variable, symbol in functions.items():
        if addresses is not None:
            by_variable[variable] = addresses["finalizing" if variable == "finalizing" else symbol]
            prelude.append(f"set $ts_f_{variable} = {by_variable[variable]:#x}")
        else:
            lines.append(f"set $ts_f_{variable} = (long)&{symbol}")
    for arguments in (0, 1, 2, 3, 6):
        prelude += _call_command(arguments)
    stub: bytes | None = None
    stub_size = (STUB_SIZE + payload_size + 4095) & ~4095
    if addresses is not None and stub_path is not None:
        stub = stub_code(by_variable, entry + SYSCALL_AT, stub_size, MAGIC_SIZE) + payload
    lines += [f"set $ts_s_{reg} = (long)${reg}" for reg in GDB_REGISTERS]
    lines += [
        "set $ts_s_rip = (long)$rip",
        "set $ts_s_eflags = $eflags",
        "set $ts_s_orig_rax = (long)$orig_rax",
        "set $ts_saved = 1",
        'printf "TS-STATE %ld %ld\\n", $ts_s_orig_rax, $ts_s_rax',
        "set $ts_o0 = *(long*)$ts_entry",
        "set $ts_o1 = *(long*)($ts_entry + 8)",
        'printf "TS-MODIFYING\\n"',
        "set $ts_tramp = 1",
        f"set var *(long*)$ts_entry = {tramp_lo:#x}",
        f"set var *(long*)($ts_entry + 8) = {tramp_hi:#x}",
        # What every call through the trampoline starts from (the calls keep them): below the
        # red zone, a 64-byte aligned fxsave area (rbx), then the stack for the calls.
        "set $rbx = ($ts_s_rsp - 1280) & ~63",
        "set $rsp = $rbx - 64",
        "set $orig_rax = -1",
        f"set $ts_safe = ({safe})",
    ]
    if stub is not None:
        # Parked in a system call: map the stub (a raw mmap, no libc), run it (one stop).
        lines += [
            "if $ts_safe",
            "  set $rax = 9",
            "  set $rdi = 0",
            f"  set $rsi = {stub_size}",
            "  set $rdx = 7",
            "  set $r10 = 0x22",
            "  set $r8 = -1",
            "  set $r9 = 0",
            f"  set $rip = $ts_entry + {SYSCALL_AT}",
            "  continue",
            "  set $ts_stub = (long)$rax",
            f"  if (long)$rip != $ts_entry + {SYSCALL_RETURN}",
            "    set $ts_ok = 0",
            '    printf "TS-ERROR unexpected stop at %#lx\\n", (long)$rip',
            "  end",
            # A refused mapping (a host that forbids writable code): the calls one by one.
            "  if $ts_ok && (unsigned long)$ts_stub < (unsigned long)-4096",
            f"    restore {stub_path} binary $ts_stub",
            "    set $rip = $ts_stub",
            "    continue",
            "    set $ts_outcome = (int)$r12",
            f"    if (long)$rip != $ts_entry + {SYSCALL_RETURN}",
            "      set $ts_outcome = -1",
            '      printf "TS-ERROR unexpected stop at %#lx\\n", (long)$rip',
            "    end",
            # What it did, which the caller reads (`stub_outcome`): done, unless it found the
            # GIL held, which leaves the queue (the calls below).
            '    printf "TS-STUB %d\\n", $ts_outcome',
            f"    if $ts_outcome != {GIL_HELD}",
            "      set $ts_mode = 3",
            "    else",
            "      set $ts_safe = 0",
            "    end",
            "  end",
            "end",
        ]
    # The calls one by one: no stub, or its mapping refused, or the GIL held.
    calls = [
        "ts_call0 $ts_f_isinit",
        "if $ts_ok && (int)$ts_ret == 0",
        '  printf "TS-NOTINIT\\n"',
        "  set $ts_ok = 0",
        "end",
        "ts_call0 $ts_f_finalizing",
        "if $ts_ok && (int)$ts_ret != 0",
        '  printf "TS-FINALIZING\\n"',
        "  set $ts_ok = 0",
        "end",
        "if $ts_ok && $ts_safe",
        "  ts_call0 $ts_f_gilcheck",
        "  if $ts_ok && (int)$ts_ret == 0",
        "    set $ts_mode = 1",
        "  end",
        "end",
    ]
    if queue:
        calls += ["if $ts_ok && $ts_mode == 0", "  set $ts_mode = 2", "end"]
    calls += [
        # Run it now, on this parked thread.
        "if $ts_mode == 1",
        f"  ts_call6 $ts_f_mmap 0 {map_size} 3 0x22 -1 0",
        "  set $ts_region = $ts_ret",
        "  if $ts_ok && ($ts_region == -1 || $ts_region == 0)",
        '    printf "TS-ERROR mmap failed\\n"',
        "    set $ts_ok = 0",
        "  end",
        "  if $ts_ok",
        f"    restore {payload_path} binary $ts_region",
        "    ts_call0 $ts_f_errno",
        "    set $ts_errno_ptr = $ts_ret",
        "    set $ts_errno = *(int*)$ts_errno_ptr",
        "    ts_call0 $ts_f_ensure",
        "    set $ts_gstate = $ts_ret",
        f"    ts_call1 $ts_f_run $ts_region+{MAGIC_SIZE}",
        '    printf "TS-RAN %d\\n", (int)$ts_ret',
        "    ts_call1 $ts_f_release $ts_gstate",
        "    set var *(int*)$ts_errno_ptr = $ts_errno",
        f"    ts_call2 $ts_f_munmap $ts_region {map_size}",
        "  end",
        "end",
        # Queue it for the main thread's next eval-breaker check.
        "if $ts_mode == 2",
        f"  ts_call3 $ts_f_shmget 0 {map_size} 0x380",
        "  set $ts_shmid = (int)$ts_ret",
        "  if $ts_ok && $ts_shmid < 0",
        '    printf "TS-ERROR shmget failed\\n"',
        "    set $ts_ok = 0",
        "  end",
        "  ts_call3 $ts_f_shmat $ts_shmid 0 0",
        "  set $ts_region = $ts_ret",
        "  ts_call3 $ts_f_shmctl $ts_shmid 0 0",  # IPC_RMID: gone once detached
        "  if $ts_ok && $ts_region == -1",
        '    printf "TS-ERROR shmat failed\\n"',
        "    set $ts_ok = 0",
        "  end",
        "  if $ts_ok",
        f"    restore {payload_path} binary $ts_region",
        f"    ts_call2 $ts_f_pending $ts_f_run $ts_region+{MAGIC_SIZE}",
        "    if $ts_ok && (int)$ts_ret != 0",
        '      printf "TS-ERROR pending call queue full\\n"',
        "      ts_call1 $ts_f_shmdt $ts_region",
        "      set $ts_ok = 0",
        "    end",
        "    ts_call2 $ts_f_pending $ts_f_shmdt $ts_region",
        "    if $ts_ok",
        '      printf "TS-QUEUED %#lx %d\\n", $ts_region, (int)$ts_ret',
        "    end",
        "  end",
        "end",
        "if $ts_mode == 0 && $ts_ok",
        '  printf "TS-BUSY\\n"',
        "end",
    ]
    lines += ["if $ts_mode == 0", *(f"  {line}" for line in calls), "end"]
    # gdb reads a command file's `if` blocks line by line as it meets them, slowly (a tenth
    # of a millisecond a line): the commands are defined in the prelude, read before gdb
    # attaches, and the process is stopped only while they run.
    prelude += ["define ts_inject", *(f"  {line}" for line in lines), "end"]
    prelude += ["define ts_restore", *(f"  {line}" for line in _restore_lines()), "end"]
    return GdbScripts("\n".join(prelude) + "\n", "ts_inject\n", stub)


def _one_of(variable: str, numbers: Iterable[int]) -> str:
    """A gdb expression true when `variable` is one of `numbers` (non-negative), with one test
    per 64 numbers (a bit mask) rather than one per number."""
    words: dict[int, int] = {}
    for number in numbers:
        words[number // 64] = words.get(number // 64, 0) | 1 << (number % 64)
    tests = [
        f"({variable} >= {word * 64} && {variable} < {word * 64 + 64}"
        f" && (({mask:#x} >> ({variable} - {word * 64})) & 1))"
        for word, mask in sorted(words.items())
    ]
    return " || ".join(tests)


def gdb_restore_script() -> str:
    """Run after the main script even if it stopped on an error: put everything back (the
    command the prelude defines)."""
    return "ts_restore\n"


def _restore_lines() -> list[str]:
    lines = [
        "if $ts_tramp",
        "  set var *(long*)$ts_entry = $ts_o0",
        "  set var *(long*)($ts_entry + 8) = $ts_o1",
        "end",
        "if $ts_saved",
        "  set $rip = $ts_s_rip",
    ]
    lines += [f"  set ${reg} = $ts_s_{reg}" for reg in GDB_REGISTERS]
    lines += [
        "  set $eflags = $ts_s_eflags",
        "  set $orig_rax = $ts_s_orig_rax",
        # A restart through restart_syscall would hide the system call from the next injection
        # (and from the whitelist); EINTR is retried by CPython with the remaining timeout.
        f"  if $ts_s_rax == {ERESTART_RESTARTBLOCK}",
        f"    set $rax = {EINTR}",
        "  end",
        # A futex wait that returns EINTR makes a Python lock acquire run pending calls.
        f"  if $ts_mode == 2 && $ts_s_orig_rax == {SYS_FUTEX}"
        f" && ($ts_s_rax == {ERESTARTSYS} || $ts_s_rax == {ERESTARTNOHAND}"
        f" || $ts_s_rax == {ERESTARTNOINTR})",
        f"    set $rax = {EINTR}",
        "  end",
        '  printf "TS-RESTORED\\n"',
        "end",
    ]
    return lines
