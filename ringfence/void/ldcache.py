"""Reader for glibc's /etc/ld.so.cache, the loader's index of sonames to library paths.

Owns: parsing both cache formats ("glibc-ld.so.cache1.1" and the legacy "ld.so-1.7.0", alone or
combined), the per-process cache of parsed files (keyed by inode, size and mtime), the glibc
flag values that tie an entry to a machine ABI, and the lookup rule the loader applies
(``_dl_cache_check_flags``: an entry is usable only if its flags are plain ELF or exactly the
ABI of the requesting binary, so an x86-64 program never gets an i386 library).

Must never: run ldconfig or any other program, trust the cache's paths without the caller
checking the file's ELF header (the cache can be stale), or import anything heavy.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

# Entry flags: glibc sysdeps/generic/ldconfig.h
FLAG_TYPE_MASK = 0x00FF
FLAG_ELF = 0x0001
FLAG_ELF_LIBC6 = 0x0003
FLAG_REQUIRED_MASK = 0xFF00
FLAG_SPARC_LIB64 = 0x0100
FLAG_IA64_LIB64 = 0x0200
FLAG_X8664_LIB64 = 0x0300
FLAG_S390_LIB64 = 0x0400
FLAG_POWERPC_LIB64 = 0x0500
FLAG_MIPS64_LIBN32 = 0x0600
FLAG_MIPS64_LIBN64 = 0x0700
FLAG_X8664_LIBX32 = 0x0800
FLAG_ARM_LIBHF = 0x0900
FLAG_AARCH64_LIB64 = 0x0A00
FLAG_ARM_LIBSF = 0x0B00
FLAG_RISCV_FLOAT_ABI_SOFT = 0x0F00
FLAG_RISCV_FLOAT_ABI_DOUBLE = 0x1000
FLAG_LARCH_FLOAT_ABI_DOUBLE = 0x1200

# Cache layout: glibc sysdeps/generic/dl-cache.h
MAGIC_OLD = b"ld.so-1.7.0"
MAGIC_NEW = b"glibc-ld.so.cache1.1"
_OLD_HEADER = 16  # char magic[11]; (pad); uint32 nlibs
_OLD_ENTRY = 12  # int32 flags; uint32 key, value
_NEW_HEADER = 48  # magic+version[20]; nlibs; len_strings; u8 flags; pad[3]; ext_off; unused[3]
_NEW_ENTRY = 24  # int32 flags; uint32 key, value; uint32 osversion; uint64 hwcap
_NEW_ENDIAN_MASK = 3
_NEW_ENDIAN_LITTLE = 2
_NEW_ENDIAN_BIG = 3
# The hwcap field with this bit set names a glibc-hwcaps subdirectory (x86-64-v3, ...).
DL_CACHE_HWCAP_EXTENSION = 1 << 62

# ELF identifiers: elf.h (duplicated from elf.py to keep this module import-free)
_ELFCLASS32, _ELFCLASS64 = 1, 2
_EM_SPARCV9, _EM_S390, _EM_PPC64, _EM_IA_64 = 43, 22, 21, 50
_EM_X86_64, _EM_ARM, _EM_AARCH64, _EM_MIPS = 62, 40, 183, 8
_EM_RISCV, _EM_LOONGARCH = 243, 258
_EF_ARM_ABI_FLOAT_SOFT, _EF_ARM_ABI_FLOAT_HARD = 0x200, 0x400
_EF_RISCV_FLOAT_ABI_MASK, _EF_RISCV_FLOAT_ABI_DOUBLE = 0x6, 0x4


@dataclass(frozen=True)
class CacheEntry:
    """One line of ``ldconfig -p``: a name, the library's path, its ABI flags and hwcap."""

    name: str
    path: str
    flags: int
    hwcap: int


@dataclass(frozen=True)
class LdCache:
    """A parsed cache: entries in file order, plus an index by name."""

    format: str  # "new", "old" or "old+new"
    entries: tuple[CacheEntry, ...]
    by_name: dict[str, tuple[CacheEntry, ...]]

    def lookup(self, name: str, abi_flags: int) -> str | None:
        """The path the loader would take from the cache for ``name``, or None.

        ``abi_flags`` is :func:`abi_flags` of the requesting binary. Entries under a
        glibc-hwcaps subdirectory or with legacy hwcap bits are skipped: the baseline library
        works on every CPU, and the void does not carry the optimised variants.
        """
        for entry in self.by_name.get(name, ()):
            if entry.hwcap == 0 and (entry.flags == FLAG_ELF or entry.flags == abi_flags):
                return entry.path
        return None


def abi_flags(elf_class: int, machine: int, e_flags: int = 0) -> int:
    """The cache flags glibc's loader accepts for a binary (``_DL_CACHE_DEFAULT_ID``)."""
    required = 0
    if elf_class == _ELFCLASS64:
        required = {
            _EM_X86_64: FLAG_X8664_LIB64,
            _EM_AARCH64: FLAG_AARCH64_LIB64,
            _EM_PPC64: FLAG_POWERPC_LIB64,
            _EM_S390: FLAG_S390_LIB64,
            _EM_SPARCV9: FLAG_SPARC_LIB64,
            _EM_IA_64: FLAG_IA64_LIB64,
            _EM_MIPS: FLAG_MIPS64_LIBN64,
            _EM_LOONGARCH: FLAG_LARCH_FLOAT_ABI_DOUBLE,
        }.get(machine, 0)
        if machine == _EM_RISCV:
            double = (e_flags & _EF_RISCV_FLOAT_ABI_MASK) == _EF_RISCV_FLOAT_ABI_DOUBLE
            required = FLAG_RISCV_FLOAT_ABI_DOUBLE if double else FLAG_RISCV_FLOAT_ABI_SOFT
    elif machine == _EM_X86_64:  # x32
        required = FLAG_X8664_LIBX32
    elif machine == _EM_ARM:
        if e_flags & _EF_ARM_ABI_FLOAT_HARD:
            required = FLAG_ARM_LIBHF
        elif e_flags & _EF_ARM_ABI_FLOAT_SOFT:
            required = FLAG_ARM_LIBSF
    return FLAG_ELF_LIBC6 | required


def describe_flags(flags: int) -> str:
    """The words ``ldconfig -p`` prints for an entry's flags, e.g. ``libc6,x86-64``."""
    kind = {0: "libc4", 1: "ELF", 2: "libc5", 3: "libc6"}.get(flags & FLAG_TYPE_MASK, "unknown")
    required = flags & FLAG_REQUIRED_MASK
    names = {
        FLAG_SPARC_LIB64: "64bit",
        FLAG_IA64_LIB64: "IA-64",
        FLAG_X8664_LIB64: "x86-64",
        FLAG_S390_LIB64: "64bit",
        FLAG_POWERPC_LIB64: "64bit",
        FLAG_MIPS64_LIBN32: "N32",
        FLAG_MIPS64_LIBN64: "64bit",
        FLAG_X8664_LIBX32: "x32",
        FLAG_ARM_LIBHF: "hard-float",
        FLAG_AARCH64_LIB64: "AArch64",
        FLAG_ARM_LIBSF: "soft-float",
    }
    if required == 0:
        return kind
    return f"{kind},{names.get(required, str(required >> 8))}"


class CacheFormatError(ValueError):
    """The bytes are not a cache this module understands (the loader would ignore it too)."""


def _cstr(data: bytes, offset: int) -> str:
    if not 0 <= offset < len(data):
        raise CacheFormatError(f"string offset {offset} outside the cache")
    end = data.find(b"\0", offset)
    if end < 0:
        raise CacheFormatError("unterminated string")
    return data[offset:end].decode("utf-8", "surrogateescape")


def _parse_new(data: bytes, base: int) -> list[CacheEntry]:
    if len(data) < base + _NEW_HEADER:
        raise CacheFormatError("truncated header")
    endian = data[base + 28] & _NEW_ENDIAN_MASK
    order = {_NEW_ENDIAN_LITTLE: "<", _NEW_ENDIAN_BIG: ">"}.get(endian, "=")
    nlibs, _len_strings = struct.unpack_from(order + "II", data, base + 20)
    if base + _NEW_HEADER + nlibs * _NEW_ENTRY > len(data):
        raise CacheFormatError(f"{nlibs} entries do not fit in {len(data)} bytes")
    out = []
    fmt = struct.Struct(order + "iIIIQ")
    # String offsets in the new format count from the start of the new header.
    for i in range(nlibs):
        flags, key, value, _osv, hwcap = fmt.unpack_from(data, base + _NEW_HEADER + i * _NEW_ENTRY)
        out.append(CacheEntry(_cstr(data, base + key), _cstr(data, base + value), flags, hwcap))
    return out


def _parse_old(data: bytes) -> list[CacheEntry]:
    (nlibs,) = struct.unpack_from("=I", data, 12)
    table_end = _OLD_HEADER + nlibs * _OLD_ENTRY
    if table_end > len(data):
        raise CacheFormatError(f"{nlibs} entries do not fit in {len(data)} bytes")
    out = []
    fmt = struct.Struct("=iII")
    # String offsets in the old format count from the end of the entry table.
    for i in range(nlibs):
        flags, key, value = fmt.unpack_from(data, _OLD_HEADER + i * _OLD_ENTRY)
        out.append(
            CacheEntry(_cstr(data, table_end + key), _cstr(data, table_end + value), flags, 0)
        )
    return out


def parse(data: bytes) -> LdCache:
    """Parse a cache file's bytes. Raises :class:`CacheFormatError` on anything malformed."""
    try:
        if data.startswith(MAGIC_NEW):
            entries, fmt = _parse_new(data, 0), "new"
        elif data.startswith(MAGIC_OLD):
            (nlibs,) = struct.unpack_from("=I", data, 12)
            # glibc: the new cache follows the old table, aligned like struct cache_file_new.
            new_at = (_OLD_HEADER + nlibs * _OLD_ENTRY + 7) & ~7
            if data.startswith(MAGIC_NEW, new_at):
                entries, fmt = _parse_new(data, new_at), "old+new"
            else:
                entries, fmt = _parse_old(data), "old"
        else:
            raise CacheFormatError("unknown magic")
    except struct.error as exc:
        raise CacheFormatError(str(exc)) from None
    index: dict[str, list[CacheEntry]] = {}
    for entry in entries:
        index.setdefault(entry.name, []).append(entry)
    return LdCache(fmt, tuple(entries), {k: tuple(v) for k, v in index.items()})


_MAX_CACHE_BYTES = 64 << 20
_loaded: dict[str, tuple[tuple[int, int, int, int], LdCache | None]] = {}


def load(host_path: str) -> LdCache | None:
    """The parsed cache at ``host_path``, or None if it is absent or unreadable as a cache.

    Parsed once per process and reparsed only when the file's identity, size or mtime change
    (ldconfig replaces the file by rename, so a new inode means a new cache).
    """
    try:
        fd = os.open(host_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        hit = _loaded.get(host_path)
        if hit is not None and hit[0] == key:
            return hit[1]
        # A missing or corrupt cache is not an error: the loader falls back to default dirs.
        if not (st.st_mode & 0o170000 == 0o100000 and 0 < st.st_size <= _MAX_CACHE_BYTES):
            result = None
        else:
            chunks = []
            left = st.st_size
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            try:
                result = parse(b"".join(chunks))
            except CacheFormatError:
                result = None
        _loaded[host_path] = (key, result)
        return result
    finally:
        os.close(fd)
