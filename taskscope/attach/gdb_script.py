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
from pathlib import Path

from taskscope.attach.elf import exported_functions
from taskscope.attach.errors import InjectionError
from taskscope.attach.roots import target_file
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

# cld; fxsave64 [rbx]; call rax; fxrstor64 [rbx]; int3  (+ padding)
TRAMPOLINE = bytes.fromhex("fc 48 0f ae 03 ff d0 48 0f ae 0b cc cc cc cc cc")
TRAMPOLINE_RETURN = 12  # rip after the int3

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


def gdb_script(
    info: TargetInfo,
    payload_path: str,
    payload_size: int,
    *,
    queue: bool,
    addresses: dict[str, int] | None = None,
) -> str:
    """The gdb command file: save registers, install the trampoline, decide, run or queue.
    With `addresses` (see `function_addresses`) it names no symbol."""
    entry = entry_point(info.pid)
    tramp_lo, tramp_hi = struct.unpack("<QQ", TRAMPOLINE)
    finalizing = "Py_IsFinalizing" if info.version >= (3, 13) else "_Py_IsFinalizing"
    safe = " || ".join(f"$ts_s_orig_rax == {n}" for n in sorted(SAFE_SYSCALLS.values()))
    map_size = (payload_size + 4095) & ~4095
    lines = [
        "set confirm off",
        "set pagination off",
        "set width 0",
        "set height 0",
        "handle all nostop noprint pass",
        "handle SIGINT nostop noprint pass",
        "set $ts_pc = $pc",  # fails (and ends the script) when nothing is attached
        'printf "TS-ATTACHED\\n"',
        "set $ts_saved = 0",
        "set $ts_tramp = 0",
        "set $ts_mode = 0",
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
    for variable, symbol in functions.items():
        if addresses is not None:
            known = addresses["finalizing" if variable == "finalizing" else symbol]
            lines.append(f"set $ts_f_{variable} = {known:#x}")
        else:
            lines.append(f"set $ts_f_{variable} = (long)&{symbol}")
    lines += [
        'printf "TS-SYMBOLS\\n"',
        f"set $ts_entry = {entry:#x}",
        "define ts_call",
        "  if $ts_ok",
        "    set $rax = $arg0",
        "    set $rdi = $arg1",
        "    set $rsi = $arg2",
        "    set $rdx = $arg3",
        "    set $rcx = $arg4",
        "    set $r8 = $arg5",
        "    set $r9 = $arg6",
        "    set $rbx = $ts_fx",
        "    set $rsp = $ts_sp",
        "    set $rip = $ts_entry",
        "    set $orig_rax = -1",
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
    lines += [f"set $ts_s_{reg} = (long)${reg}" for reg in GDB_REGISTERS]
    lines += [
        "set $ts_s_rip = (long)$rip",
        "set $ts_s_eflags = $eflags",
        "set $ts_s_orig_rax = (long)$orig_rax",
        "set $ts_saved = 1",
        'printf "TS-STATE %ld %ld\\n", $ts_s_orig_rax, $ts_s_rax',
        # Below the red zone, 64-byte aligned fxsave area, then the stack for our calls.
        "set $ts_fx = ($ts_s_rsp - 1280) & ~63",
        "set $ts_sp = $ts_fx - 64",
        "set $ts_o0 = *(long*)$ts_entry",
        "set $ts_o1 = *(long*)($ts_entry + 8)",
        'printf "TS-MODIFYING\\n"',
        "set $ts_tramp = 1",
        f"set var *(long*)$ts_entry = {tramp_lo:#x}",
        f"set var *(long*)($ts_entry + 8) = {tramp_hi:#x}",
        "set $ts_ok = 1",
        "set $ts_mode = 0",
        "ts_call $ts_f_isinit 0 0 0 0 0 0",
        "if $ts_ok && (int)$ts_ret == 0",
        '  printf "TS-NOTINIT\\n"',
        "  set $ts_ok = 0",
        "end",
        "ts_call $ts_f_finalizing 0 0 0 0 0 0",
        "if $ts_ok && (int)$ts_ret != 0",
        '  printf "TS-FINALIZING\\n"',
        "  set $ts_ok = 0",
        "end",
        f"if $ts_ok && ({safe})",
        "  ts_call $ts_f_gilcheck 0 0 0 0 0 0",
        "  if $ts_ok && (int)$ts_ret == 0",
        "    set $ts_mode = 1",
        "  end",
        "end",
    ]
    if queue:
        lines += ["if $ts_ok && $ts_mode == 0", "  set $ts_mode = 2", "end"]
    lines += [
        # Run it now, on this parked thread.
        "if $ts_mode == 1",
        f"  ts_call $ts_f_mmap 0 {map_size} 3 0x22 -1 0",
        "  set $ts_region = $ts_ret",
        "  if $ts_ok && ($ts_region == -1 || $ts_region == 0)",
        '    printf "TS-ERROR mmap failed\\n"',
        "    set $ts_ok = 0",
        "  end",
        "  if $ts_ok",
        f"    restore {payload_path} binary $ts_region",
        "    ts_call $ts_f_errno 0 0 0 0 0 0",
        "    set $ts_errno_ptr = $ts_ret",
        "    set $ts_errno = *(int*)$ts_errno_ptr",
        "    ts_call $ts_f_ensure 0 0 0 0 0 0",
        "    set $ts_gstate = $ts_ret",
        f"    ts_call $ts_f_run $ts_region+{MAGIC_SIZE} 0 0 0 0 0",
        '    printf "TS-RAN %d\\n", (int)$ts_ret',
        "    ts_call $ts_f_release $ts_gstate 0 0 0 0 0",
        "    set var *(int*)$ts_errno_ptr = $ts_errno",
        f"    ts_call $ts_f_munmap $ts_region {map_size} 0 0 0 0",
        "  end",
        "end",
        # Queue it for the main thread's next eval-breaker check.
        "if $ts_mode == 2",
        f"  ts_call $ts_f_shmget 0 {map_size} 0x380 0 0 0",
        "  set $ts_shmid = (int)$ts_ret",
        "  if $ts_ok && $ts_shmid < 0",
        '    printf "TS-ERROR shmget failed\\n"',
        "    set $ts_ok = 0",
        "  end",
        "  ts_call $ts_f_shmat $ts_shmid 0 0 0 0 0",
        "  set $ts_region = $ts_ret",
        "  ts_call $ts_f_shmctl $ts_shmid 0 0 0 0 0",  # IPC_RMID: gone once detached
        "  if $ts_ok && $ts_region == -1",
        '    printf "TS-ERROR shmat failed\\n"',
        "    set $ts_ok = 0",
        "  end",
        "  if $ts_ok",
        f"    restore {payload_path} binary $ts_region",
        f"    ts_call $ts_f_pending $ts_f_run $ts_region+{MAGIC_SIZE} 0 0 0 0",
        "    if $ts_ok && (int)$ts_ret != 0",
        '      printf "TS-ERROR pending call queue full\\n"',
        "      ts_call $ts_f_shmdt $ts_region 0 0 0 0 0",
        "      set $ts_ok = 0",
        "    end",
        "    ts_call $ts_f_pending $ts_f_shmdt $ts_region 0 0 0 0",
        "    if $ts_ok",
        '      printf "TS-QUEUED %#lx %d\\n", $ts_region, (int)$ts_ret',
        "    end",
        "  end",
        "end",
        "if $ts_mode == 0 && $ts_ok",
        '  printf "TS-BUSY\\n"',
        "end",
    ]
    return "\n".join(lines) + "\n"


def gdb_restore_script() -> str:
    """Run after the main script even if it stopped on an error: put everything back."""
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
    return "\n".join(lines) + "\n"
