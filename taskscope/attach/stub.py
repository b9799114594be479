"""The x86-64 machine code that runs the injected code on a parked main thread in ONE stop of
gdb's: checks that Python is up, takes the GIL, runs the source, gives the GIL back, puts errno
back and unmaps its own memory, where the gdb script would otherwise make seven function calls
(each a resume and a stop of the process, and a dozen gdb commands while it is stopped).

gdb maps a private read-write-execute region with a raw `mmap` system call (one stop), writes
this code followed by the source into it, and points the thread at its start with the stack and
the fxsave area set as for the trampoline's calls. The code reads the functions' addresses from
its own immediates (taskscope knows them before gdb attaches) and the source's address relative
to itself, so it can be made before the region exists. It leaves through the `syscall; int3` at
`SYSCALL_AT` of the trampoline with `munmap` of its region in the registers: the process stops
at the int3 with the region gone, and the outcome in r12 (`NOT_INITIALIZED`, `FINALIZING`,
`GIL_HELD`, or `RAN` plus what PyRun_SimpleString returned, 0 or -1).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

NOT_INITIALIZED = 1
FINALIZING = 2
GIL_HELD = 3
RAN = 16  # + PyRun_SimpleString's result: 16 ran, 15 raised

#: Where the stub's own code ends and the source (after its magic bytes) begins.
STUB_SIZE = 256


class _Code:
    """A tiny assembler: the instructions the stub needs, with forward jumps patched."""

    def __init__(self) -> None:
        self.code = bytearray()
        self.jumps: list[tuple[int, str]] = []
        self.labels: dict[str, int] = {}

    def emit(self, raw: bytes) -> None:
        self.code += raw

    def call(self, address: int) -> None:
        self.emit(b"\x48\xb8" + struct.pack("<Q", address))  # movabs rax, address
        self.emit(b"\xff\xd0")  # call rax

    def status_unless(self, status: int, jump_if_zero: bool, label: str) -> None:
        """r12d = status, then leave for `label` if eax is (or is not) zero."""
        self.emit(b"\x41\xbc" + struct.pack("<I", status))  # mov r12d, status
        self.emit(b"\x85\xc0")  # test eax, eax
        self.emit(b"\x74" if jump_if_zero else b"\x75")  # je / jne rel8
        self.jumps.append((len(self.code), label))
        self.emit(b"\x00")

    def lea_rdi(self, target: int) -> None:
        """rdi = the address of offset `target` of the stub (rip-relative)."""
        self.emit(b"\x48\x8d\x3d")
        self.emit(struct.pack("<i", target - (len(self.code) + 4)))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        for at, name in self.jumps:
            distance = self.labels[name] - (at + 1)
            assert -128 <= distance < 128
            self.code[at] = distance & 0xFF
        return bytes(self.code)


def stub_code(functions: Mapping[str, int], syscall_at: int, region_size: int, magic: int) -> bytes:
    """The stub, padded to `STUB_SIZE`: `functions` by the gdb script's names (isinit,
    finalizing, gilcheck, errno, ensure, run, release), `syscall_at` the `syscall; int3` of
    the trampoline, `region_size` what `munmap` frees, `magic` the bytes before the source."""
    code = _Code()
    code.emit(b"\xfc")  # cld
    code.emit(b"\x48\x0f\xae\x03")  # fxsave64 [rbx]
    code.call(functions["isinit"])
    code.status_unless(NOT_INITIALIZED, jump_if_zero=True, label="out")
    code.call(functions["finalizing"])
    code.status_unless(FINALIZING, jump_if_zero=False, label="out")
    code.call(functions["gilcheck"])
    code.status_unless(GIL_HELD, jump_if_zero=False, label="out")
    code.call(functions["errno"])
    code.emit(b"\x49\x89\xc5")  # mov r13, rax
    code.emit(b"\x44\x8b\x30")  # mov r14d, [rax]
    code.call(functions["ensure"])
    code.emit(b"\x41\x89\xc7")  # mov r15d, eax
    code.lea_rdi(STUB_SIZE + magic)
    code.call(functions["run"])
    code.emit(b"\x41\x89\xc4")  # mov r12d, eax
    code.emit(b"\x44\x89\xff")  # mov edi, r15d
    code.call(functions["release"])
    code.emit(b"\x45\x89\x75\x00")  # mov [r13], r14d
    code.emit(b"\x41\x83\xc4" + bytes([RAN]))  # add r12d, RAN
    code.label("out")
    code.emit(b"\x48\x0f\xae\x0b")  # fxrstor64 [rbx]
    code.lea_rdi(0)
    code.emit(b"\xbe" + struct.pack("<I", region_size))  # mov esi, region_size
    code.emit(b"\xb8\x0b\x00\x00\x00")  # mov eax, 11 (munmap)
    code.emit(b"\x48\xb9" + struct.pack("<Q", syscall_at))  # movabs rcx, syscall_at
    code.emit(b"\xff\xe1")  # jmp rcx
    assembled = code.assemble()
    assert len(assembled) <= STUB_SIZE
    return assembled + b"\xcc" * (STUB_SIZE - len(assembled))
