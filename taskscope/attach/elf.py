"""Reading a 64-bit little-endian ELF file (an executable or a shared library the target has
mapped) without loading it: the bytes of an exported data symbol, and where exported functions
are. Read from the file, never from the process.
"""

from __future__ import annotations

import os
import struct


def dynamic_symbol(path: str, name: str) -> bytes | None:
    """The bytes of a data symbol exported by an ELF file (read from the file, not the process),
    or None if it isn't there."""
    try:
        with open(path, "rb") as file:
            return _read_dynamic_symbol(file.fileno(), name.encode())
    except (OSError, struct.error, IndexError):
        return None


def _read_dynamic_symbol(fd: int, name: bytes) -> bytes | None:
    header = os.pread(fd, 64, 0)
    if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:  # 64-bit little endian only
        return None
    (shoff,) = struct.unpack_from("<Q", header, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", header, 0x3A)
    table = os.pread(fd, shentsize * shnum, shoff)
    # (type, addr, offset, size, link, entsize) of each section
    sections = [struct.unpack_from("<4xI8xQQQI12xQ", table, i * shentsize) for i in range(shnum)]
    for sh_type, _addr, sh_offset, sh_size, sh_link, sh_entsize in sections:
        if sh_type != 11 or not sh_entsize:  # SHT_DYNSYM
            continue
        strtab = os.pread(fd, sections[sh_link][3], sections[sh_link][2])
        at = strtab.find(b"\0" + name + b"\0")
        if at < 0:
            return None
        symbols = os.pread(fd, sh_size, sh_offset)
        for offset in range(0, len(symbols) - sh_entsize + 1, sh_entsize):
            st_name, _info, _other, st_shndx, st_value, st_size = struct.unpack_from(
                "<IBBHQQ", symbols, offset
            )
            if st_name != at + 1 or not 0 < st_shndx < shnum:
                continue
            section_type, section_addr, section_offset = sections[st_shndx][:3]
            if section_type == 8:  # SHT_NOBITS: no bytes in the file
                return None
            return os.pread(fd, st_size, section_offset + st_value - section_addr)
    return None


_STT_FUNC = 2


def exported_functions(path: str, names: set[bytes]) -> tuple[int, dict[bytes, int]] | None:
    """The virtual address of the first loaded segment of an ELF file and the addresses of the
    exported functions among `names` it defines (plain functions only: an IFUNC's address is
    its resolver's), read from the file; None if it is not a 64-bit little-endian ELF."""
    try:
        with open(path, "rb") as file:
            fd = file.fileno()
            header = os.pread(fd, 64, 0)
            if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return None
            (phoff, shoff) = struct.unpack_from("<QQ", header, 0x20)
            phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", header, 0x36)
            base = None
            programs = os.pread(fd, phentsize * phnum, phoff)
            for index in range(phnum):
                p_type, _flags, p_offset, p_vaddr = struct.unpack_from(
                    "<IIQQ", programs, index * phentsize
                )
                if p_type == 1 and p_offset == 0:  # PT_LOAD of the file's first page
                    base = p_vaddr
                    break
            if base is None:
                return None
            table = os.pread(fd, shentsize * shnum, shoff)
            sections = [
                struct.unpack_from("<4xI8xQQQI12xQ", table, i * shentsize) for i in range(shnum)
            ]
            found: dict[bytes, int] = {}
            for sh_type, _addr, sh_offset, sh_size, sh_link, sh_entsize in sections:
                if sh_type != 11 or not sh_entsize:  # SHT_DYNSYM
                    continue
                strtab = os.pread(fd, sections[sh_link][3], sections[sh_link][2])
                symbols = os.pread(fd, sh_size, sh_offset)
                for offset in range(0, len(symbols) - sh_entsize + 1, sh_entsize):
                    st_name, st_info, _other, st_shndx, st_value = struct.unpack_from(
                        "<IBBHQ", symbols, offset
                    )
                    if st_info & 0xF != _STT_FUNC or not st_shndx or not st_value:
                        continue
                    end = strtab.find(b"\0", st_name)
                    name = strtab[st_name:end]
                    if name in names and name not in found:
                        found[name] = st_value
            return base, found
    except (OSError, struct.error, IndexError):
        return None
