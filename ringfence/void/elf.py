"""ELF closure: every file and symlink a program needs to start inside an empty root.

Owns: a small ELF reader (ELF32/ELF64, either byte order: PT_INTERP, PT_DYNAMIC and its
DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_FLAGS_1), a resolver that follows symlinks the
way the kernel does while staying inside a chosen root, and the search order of glibc's loader
(``_dl_map_object``): RPATH of the loader and its loaders (skipped when the loader has a
RUNPATH), RUNPATH of the loader for its own direct needs, ``/etc/ld.so.cache`` (entries for the
binary's ABI only), then the default directories; DF_1_NODEFLIB, $ORIGIN/$LIB/$PLATFORM, "#!"
scripts, static and static-pie binaries. Candidates of the wrong ELF class or machine are
skipped, as the loader skips them.

The result names each file as the loader will ask for it, the real file behind it, and every
symlink (directory links such as /lib64 -> usr/lib64 and file links such as libz.so.1 ->
libz.so.1.2.13) that must exist in the void for that path to work; :func:`mount_entries` turns
it into read-only binds ordered parents first.

Must never: execute the binary or ask ldd/ld.so about it (the binary is untrusted), honour
LD_LIBRARY_PATH, LD_PRELOAD or /etc/ld.so.preload (the environment is not trusted and the void
does not carry them), follow a symlink out of ``root``, or read more of a file than the headers
it needs (a hostile ELF can claim any size).

Known limits, each failing closed (a library the loader would pick differently is either the
same file or reported missing): glibc-hwcaps and legacy hwcap subdirectories are not searched,
so a void gets the baseline build of a library; relative RPATH entries (which depend on the
working directory) are ignored; the default directories are Debian's multiarch ones, then
/lib64 and /usr/lib64 for 64-bit binaries, then /lib and /usr/lib.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import SpecError
from . import ldcache

# elf.h
_ELFMAG = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
_ELFDATA2LSB, _ELFDATA2MSB = 1, 2
_EV_CURRENT = 1
ET_EXEC, ET_DYN = 2, 3
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_PN_XNUM = 0xFFFF
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_SONAME, _DT_RPATH = 0, 1, 5, 10, 14, 15
_DT_RUNPATH = 29
_DT_FLAGS_1 = 0x6FFFFFFB
DF_1_NODEFLIB = 0x00000800
EM_386, EM_MIPS, EM_PPC, EM_PPC64, EM_S390, EM_ARM = 3, 8, 20, 21, 22, 40
EM_SPARCV9, EM_X86_64, EM_AARCH64, EM_RISCV, EM_LOONGARCH = 43, 62, 183, 243, 258
_EF_ARM_ABI_FLOAT_HARD = 0x400

# Layouts after e_ident (elf.h Elf32_Ehdr / Elf64_Ehdr): type, machine, version, entry, phoff,
# shoff, flags, ehsize, phentsize, phnum, shentsize, shnum, shstrndx.
_EHDR = {ELFCLASS32: "HHIIIIIHHHHHH", ELFCLASS64: "HHIQQQIHHHHHH"}
_PHDR = {ELFCLASS32: "IIIIIIII", ELFCLASS64: "IIQQQQQQ"}  # Elf32_Phdr / Elf64_Phdr
_SHDR_INFO_AT = {ELFCLASS32: 28, ELFCLASS64: 44}  # offset of sh_info in Elf{32,64}_Shdr
_DYN = {ELFCLASS32: "iI", ELFCLASS64: "qQ"}  # Elf32_Dyn / Elf64_Dyn

# Bounds against hostile files: far above anything real, small enough to stay fast.
_MAX_INTERP = 4096  # PATH_MAX
_MAX_DYNAMIC = 1 << 20
_MAX_STRING = 64 << 10
_MAX_NEEDED = 4096
_MAX_OBJECTS = 4096
_MAX_SYMLINKS = 40  # the kernel's MAXSYMLINKS
_BINPRM_BUF = 256  # the kernel's BINPRM_BUF_SIZE: how much of a "#!" line it reads
_MAX_SCRIPT_DEPTH = 4  # binfmt_script nesting the kernel allows

# Debian multiarch tuples: (class, machine, little endian) -> triplet.
_MULTIARCH = {
    (ELFCLASS64, EM_X86_64, True): "x86_64-linux-gnu",
    (ELFCLASS32, EM_X86_64, True): "x86_64-linux-gnux32",
    (ELFCLASS32, EM_386, True): "i386-linux-gnu",
    (ELFCLASS64, EM_AARCH64, True): "aarch64-linux-gnu",
    (ELFCLASS64, EM_PPC64, True): "powerpc64le-linux-gnu",
    (ELFCLASS64, EM_PPC64, False): "powerpc64-linux-gnu",
    (ELFCLASS32, EM_PPC, False): "powerpc-linux-gnu",
    (ELFCLASS64, EM_S390, False): "s390x-linux-gnu",
    (ELFCLASS64, EM_RISCV, True): "riscv64-linux-gnu",
    (ELFCLASS64, EM_MIPS, True): "mips64el-linux-gnuabi64",
    (ELFCLASS32, EM_MIPS, True): "mipsel-linux-gnu",
    (ELFCLASS32, EM_MIPS, False): "mips-linux-gnu",
    (ELFCLASS64, EM_LOONGARCH, True): "loongarch64-linux-gnu",
    (ELFCLASS64, EM_SPARCV9, False): "sparc64-linux-gnu",
}
# AT_PLATFORM as the kernel reports it to a process of that class and machine.
_PLATFORM = {
    (ELFCLASS64, EM_X86_64): "x86_64",
    (ELFCLASS32, EM_386): "i686",
    (ELFCLASS64, EM_AARCH64): "aarch64",
    (ELFCLASS64, EM_PPC64): "powerpc64",
    (ELFCLASS64, EM_S390): "s390x",
}

LD_SO_CACHE = "/etc/ld.so.cache"


@dataclass(frozen=True)
class ElfInfo:
    """What the loader reads from an ELF file's headers."""

    elf_class: int  # ELFCLASS32 or ELFCLASS64
    little_endian: bool
    machine: int  # e_machine
    e_type: int  # ET_EXEC, ET_DYN, ...
    e_flags: int
    interpreter: str | None  # PT_INTERP
    dynamic: bool  # has PT_DYNAMIC
    needed: tuple[str, ...]
    rpath: str | None
    runpath: str | None
    soname: str | None
    flags_1: int

    @property
    def bits(self) -> int:
        return 64 if self.elf_class == ELFCLASS64 else 32


@dataclass(frozen=True)
class ClosureEntry:
    """One file the void must contain.

    ``path`` is how the loader (or the kernel, for the binary and its interpreter) asks for it,
    ``real`` the host file behind it after all symlinks, ``needed_by`` the object whose
    DT_NEEDED, PT_INTERP or "#!" line asked for it ("" for the binary itself), and ``via`` how
    it was found: binary, script, interpreter, path, rpath, runpath, ld.so.cache, default,
    dlopen.
    """

    path: str
    real: str
    needed_by: str
    via: str = ""


@dataclass(frozen=True)
class ElfClosure:
    """Everything a binary needs in an empty root, computed without running it.

    ``symlinks`` are (link path, target exactly as stored) in the void's coordinates, parents
    first. ``needs_proc`` is true when the loader must expand $ORIGIN for the main program,
    which glibc does by reading /proc/self/exe: the void then needs /proc mounted.
    ``uses_ldcache`` is true when a library sits in a directory only /etc/ld.so.cache points
    to; the cache is then one of the entries (it lists the host's library names).
    """

    binary: str
    interpreter: str | None
    entries: tuple[ClosureEntry, ...]
    symlinks: tuple[tuple[str, str], ...]
    root: str = "/"
    shebangs: tuple[tuple[str, str | None], ...] = ()
    needs_proc: bool = False
    uses_ldcache: bool = False

    @property
    def static(self) -> bool:
        """True for a program the kernel starts without a loader (static or static-pie)."""
        return self.interpreter is None

    def files(self) -> tuple[str, ...]:
        """The real host files to bind read-only, each once, in closure order."""
        return tuple(dict.fromkeys(e.real for e in self.entries))

    def sandbox_path(self, real: str) -> str:
        """Where a real host file of this closure sits inside the void."""
        if self.root == "/":
            return real
        return real[len(self.root) :] or "/"


def _components(path: str) -> tuple[str, ...]:
    return tuple(c for c in path.split("/") if c)


def mount_entries(closure: ElfClosure) -> list[tuple[str, str]]:
    """(host real file, path inside the void) for every file, parents before children.

    Binds go to the real path, never to the path the loader asks for: that path is made to
    work by :attr:`ElfClosure.symlinks`, which the runtime creates as they are (absolute
    targets resolve inside the void). No bind destination passes through one of those
    symlinks, so binds and symlinks can be created in either order once parents exist.
    """
    out: dict[str, str] = {}
    for entry in closure.entries:
        out.setdefault(closure.sandbox_path(entry.real), entry.real)
    links = {link for link, _ in closure.symlinks}
    for dest in out:
        parts = _components(dest)
        for i in range(1, len(parts) + 1):
            prefix = "/" + "/".join(parts[:i])
            if prefix in links:
                raise SpecError(
                    f"ELF closure of {closure.binary}: {dest} is both a file and under the "
                    f"symlink {prefix}",
                    "the tree changed while it was read; compute the closure again",
                )
    return [(host, dest) for dest, host in sorted(out.items(), key=lambda i: _components(i[0]))]


def directories(closure: ElfClosure) -> list[str]:
    """Directories the void needs before binds and symlinks are made, parents first."""
    dirs: set[str] = set()
    paths = [dest for _, dest in mount_entries(closure)] + [link for link, _ in closure.symlinks]
    for path in paths:
        parts = _components(path)
        for i in range(1, len(parts)):
            dirs.add("/" + "/".join(parts[:i]))
    return sorted(dirs, key=_components)


# --------------------------------------------------------------------------- ELF reading


class _Malformed(Exception):
    """The file is an ELF file whose headers make no sense (or lie about their sizes)."""


def _pread(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise _Malformed(f"headers point past the end of the file (offset {offset})")
    return data


class _Header(NamedTuple):
    elf_class: int
    order: str
    machine: int
    e_type: int
    e_flags: int
    phoff: int
    phentsize: int
    phnum: int
    shoff: int


def _parse_header(buf: bytes) -> _Header | None:
    """None if ``buf`` is not an ELF file at all."""
    if not buf.startswith(_ELFMAG):
        return None
    if len(buf) < 16:
        raise _Malformed("file too short")
    elf_class, data, version = buf[4], buf[5], buf[6]
    if elf_class not in (ELFCLASS32, ELFCLASS64) or data not in (_ELFDATA2LSB, _ELFDATA2MSB):
        raise _Malformed(f"unknown ELF class {elf_class} or data encoding {data}")
    if len(buf) < (52 if elf_class == ELFCLASS32 else 64):  # sizeof(Elf32_Ehdr), Elf64_Ehdr
        raise _Malformed("file too short")
    if version != _EV_CURRENT:
        raise _Malformed(f"unknown ELF version {version}")
    order = "<" if data == _ELFDATA2LSB else ">"
    fields = struct.unpack_from(order + _EHDR[elf_class], buf, 16)
    e_type, machine, _v, _entry, phoff, shoff, e_flags, _eh, phentsize, phnum = fields[:10]
    return _Header(elf_class, order, machine, e_type, e_flags, phoff, phentsize, phnum, shoff)


def _read_string(fd: int, offset: int, limit: int) -> str:
    chunks = []
    total = 0
    while total < limit:
        chunk = os.pread(fd, min(512, limit - total), offset + total)
        if not chunk:
            break
        end = chunk.find(b"\0")
        if end >= 0:
            chunks.append(chunk[:end])
            return b"".join(chunks).decode("utf-8", "surrogateescape")
        chunks.append(chunk)
        total += len(chunk)
    raise _Malformed(f"unterminated string at offset {offset}")


def _parse_body(fd: int, hdr: _Header) -> ElfInfo:
    order, cls = hdr.order, hdr.elf_class
    phdr = struct.Struct(order + _PHDR[cls])
    phnum = hdr.phnum
    if phnum == _PN_XNUM:  # the real count lives in section header 0's sh_info
        (phnum,) = struct.unpack(order + "I", _pread(fd, 4, hdr.shoff + _SHDR_INFO_AT[cls]))
    if phnum and hdr.phentsize < phdr.size:
        raise _Malformed(f"program header entries of {hdr.phentsize} bytes")
    table = _pread(fd, phnum * hdr.phentsize, hdr.phoff) if phnum else b""
    loads: list[tuple[int, int, int]] = []
    interp: str | None = None
    dynamic: tuple[int, int] | None = None
    for i in range(phnum):
        fields = phdr.unpack_from(table, i * hdr.phentsize)
        if cls == ELFCLASS64:
            p_type, _flags, offset, vaddr, _paddr, filesz = fields[:6]
        else:
            p_type, offset, vaddr, _paddr, filesz = fields[:5]
        if p_type == _PT_LOAD:
            loads.append((vaddr, filesz, offset))
        elif p_type == _PT_INTERP and interp is None:
            raw = _pread(fd, min(filesz, _MAX_INTERP), offset)
            end = raw.find(b"\0")
            if end < 0 and filesz > _MAX_INTERP:
                raise _Malformed("PT_INTERP longer than PATH_MAX")
            interp = (raw if end < 0 else raw[:end]).decode("utf-8", "surrogateescape")
        elif p_type == _PT_DYNAMIC and dynamic is None:
            dynamic = (offset, filesz)

    needed_at: list[int] = []
    rpath_at = runpath_at = soname_at = strtab = None
    strsz = _MAX_STRING
    flags_1 = 0
    if dynamic is not None:
        dyn = struct.Struct(order + _DYN[cls])
        size = min(dynamic[1], _MAX_DYNAMIC) // dyn.size * dyn.size
        raw = _pread(fd, size, dynamic[0])
        for tag, val in dyn.iter_unpack(raw):
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                needed_at.append(val)
                if len(needed_at) > _MAX_NEEDED:
                    raise _Malformed(f"more than {_MAX_NEEDED} DT_NEEDED entries")
            elif tag == _DT_STRTAB:
                strtab = val
            elif tag == _DT_STRSZ:
                strsz = val
            elif tag == _DT_RPATH:
                rpath_at = val
            elif tag == _DT_RUNPATH:
                runpath_at = val
            elif tag == _DT_SONAME:
                soname_at = val
            elif tag == _DT_FLAGS_1:
                flags_1 = val

    def string(index: int | None) -> str | None:
        if index is None:
            return None
        if strtab is None:
            raise _Malformed("dynamic strings without DT_STRTAB")
        if index >= strsz:
            raise _Malformed(f"string index {index} beyond DT_STRSZ {strsz}")
        # DT_STRTAB is an address: find the PT_LOAD segment that maps it from the file.
        for vaddr, filesz, offset in loads:
            if vaddr <= strtab < vaddr + filesz:
                base = strtab - vaddr + offset
                return _read_string(fd, base + index, min(_MAX_STRING, strsz - index))
        raise _Malformed(f"DT_STRTAB {strtab:#x} is not in any PT_LOAD segment")

    needed = tuple(s for s in (string(i) for i in needed_at) if s is not None)
    rpath, runpath = string(rpath_at), string(runpath_at)
    if runpath is not None:
        rpath = None  # glibc's elf_get_dynamic_info: RUNPATH present means RPATH is ignored
    return ElfInfo(
        elf_class=cls,
        little_endian=order == "<",
        machine=hdr.machine,
        e_type=hdr.e_type,
        e_flags=hdr.e_flags,
        interpreter=interp,
        dynamic=dynamic is not None,
        needed=needed,
        rpath=rpath,
        runpath=runpath,
        soname=string(soname_at),
        flags_1=flags_1,
    )


def _open_regular(host_path: str) -> tuple[int, os.stat_result] | None:
    """An fd on a regular file, without following a final symlink or blocking on a FIFO."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
    try:
        fd = os.open(host_path, flags)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def read_elf(path: str) -> ElfInfo:
    """Parse the headers of the ELF file at ``path`` (a host path). Raises SpecError."""
    opened = _open_regular(os.path.realpath(path))
    if opened is None:
        raise SpecError(f"{path}: not a readable regular file", "check the path")
    fd, _st = opened
    try:
        try:
            hdr = _parse_header(os.pread(fd, 64, 0))
            if hdr is None:
                raise SpecError(f"{path}: not an ELF file", "give a compiled program")
            return _parse_body(fd, hdr)
        except (_Malformed, struct.error, OSError) as exc:
            raise SpecError(f"{path}: malformed ELF file: {exc}", "give a valid program") from None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- paths in a root


class _Resolved(NamedTuple):
    real: str  # in root coordinates, no symlink in any component
    links: tuple[tuple[str, str], ...]


class _Tree:
    """Kernel-style path walking (symlinks, "..") confined to ``root``, with a memo of dirs."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.prefix = "" if self.root == "/" else self.root
        self._dirs: dict[str, _Resolved | None] = {}

    def host(self, path: str) -> str:
        return self.prefix + path

    def _walk(self, start: str, names: list[str]) -> _Resolved | None:
        cur = start  # resolved so far, "" is the root
        links: list[tuple[str, str]] = []
        stack = names[::-1]
        followed = 0
        while stack:
            name = stack.pop()
            if name in ("", "."):
                continue
            if name == "..":
                cur = cur.rpartition("/")[0]  # ".." of the root is the root
                continue
            cand = cur + "/" + name
            try:
                st = os.lstat(self.prefix + cand)
            except OSError:
                return None
            if stat.S_ISLNK(st.st_mode):
                followed += 1
                if followed > _MAX_SYMLINKS:
                    return None
                try:
                    target = os.readlink(self.prefix + cand)
                except OSError:
                    return None
                links.append((cand, target))
                if target.startswith("/"):
                    cur = ""
                stack.extend(target.split("/")[::-1])
                continue
            if stack and not stat.S_ISDIR(st.st_mode):
                return None
            cur = cand
        return _Resolved(cur or "/", tuple(links))

    def resolve_dir(self, path: str) -> _Resolved | None:
        if path in self._dirs:
            return self._dirs[path]
        res = self._walk("", path.split("/"))
        self._dirs[path] = res
        return res

    def resolve(self, path: str) -> _Resolved | None:
        """Resolve an absolute path (inside the root); None if some component is missing."""
        head, _, name = path.rstrip("/").rpartition("/")
        if not name:
            return _Resolved("/", ())
        parent = self.resolve_dir(head)
        if parent is None:
            return None
        res = self._walk("" if parent.real == "/" else parent.real, [name])
        if res is None:
            return None
        return _Resolved(res.real, parent.links + res.links)


# --------------------------------------------------------------------------- the closure


class _Obj:
    """A loaded object in the graph (a plain class: created per library, cheap to define)."""

    __slots__ = ("path", "real", "info", "loader", "main")

    def __init__(
        self, path: str, real: str, info: ElfInfo, loader: _Obj | None, main: bool = False
    ) -> None:
        self.path = path  # as opened by the loader: the base of this object's $ORIGIN
        self.real = real  # root coordinates
        self.info = info
        self.loader = loader
        self.main = main


class _Found(NamedTuple):
    path: str
    resolved: _Resolved
    info: ElfInfo
    file_id: tuple[int, int]
    via: str


def _dst_value(s: str, i: int) -> tuple[str, int] | None:
    """The dynamic string token starting at s[i] == "$": (name, length) or None (literal $)."""
    for name in ("ORIGIN", "PLATFORM", "LIB"):
        if s.startswith("{" + name + "}", i + 1):
            return name, len(name) + 3
        end = i + 1 + len(name)
        if s.startswith(name, i + 1) and not (end < len(s) and (s[end].isalnum() or s[end] == "_")):
            return name, len(name) + 1
    return None


class _Closer:
    def __init__(self, tree: _Tree, binary: str) -> None:
        self.tree = tree
        self.binary = binary
        self.entries: list[ClosureEntry] = []
        self.links: dict[str, str] = {}
        self.names: dict[str, _Obj] = {}
        self.ids: dict[tuple[int, int], _Obj] = {}
        self.objects: list[_Obj] = []
        self.needs_proc = False
        self.uses_ldcache = False
        self.main: _Obj | None = None
        self.cache: ldcache.LdCache | None = None
        self.cache_loaded = False
        self.cache_resolved = _Resolved(LD_SO_CACHE, ())
        self.elf_class = ELFCLASS64
        self.machine = 0
        self.little = True
        self.e_flags = 0
        self.default_dirs: tuple[str, ...] = ()
        self.lib = "lib"
        self.platform: str | None = None

    # ---- bookkeeping

    def add(self, path: str, resolved: _Resolved, needed_by: str, via: str) -> None:
        self.entries.append(ClosureEntry(path, self.tree.host(resolved.real), needed_by, via))
        for link, target in resolved.links:
            self.links.setdefault(link, target)

    def setup_abi(self, info: ElfInfo) -> None:
        self.elf_class, self.machine = info.elf_class, info.machine
        self.little, self.e_flags = info.little_endian, info.e_flags
        flags = info.e_flags
        key = (info.elf_class, info.machine, info.little_endian)
        triplet = _MULTIARCH.get(key)
        if info.machine == EM_ARM and info.elf_class == ELFCLASS32:
            triplet = (
                "arm-linux-gnueabihf" if flags & _EF_ARM_ABI_FLOAT_HARD else "arm-linux-gnueabi"
            )
        dirs: list[str] = []
        if triplet:
            dirs += [f"/lib/{triplet}", f"/usr/lib/{triplet}"]
        if info.elf_class == ELFCLASS64:
            dirs += ["/lib64", "/usr/lib64"]
        elif info.machine == EM_X86_64:
            dirs += ["/libx32", "/usr/libx32"]
        dirs += ["/lib", "/usr/lib"]
        self.default_dirs = tuple(dirs)
        # $LIB is compiled into the loader: Debian's is the multiarch dir, others use lib64.
        if triplet and self.tree.resolve_dir(f"/usr/lib/{triplet}") is not None:
            self.lib = f"lib/{triplet}"
        elif info.elf_class == ELFCLASS64:
            self.lib = "lib64"
        self.platform = _PLATFORM.get((info.elf_class, info.machine))

    # ---- reading candidates

    def load(self, path: str, resolved: _Resolved, check_abi: bool) -> _Found | str | None:
        """Open and parse a candidate. A str is a reason to skip it (wrong class/machine)."""
        opened = _open_regular(self.tree.host(resolved.real))
        if opened is None:
            return None
        fd, st = opened
        try:
            return self.load_fd(fd, st, path, resolved, check_abi)
        finally:
            os.close(fd)

    def load_fd(
        self, fd: int, st: os.stat_result, path: str, resolved: _Resolved, check_abi: bool
    ) -> _Found | str:
        try:
            hdr = _parse_header(os.pread(fd, 64, 0))
            if hdr is None:
                if not check_abi:
                    raise SpecError(
                        f"{path}: not an ELF program or #! script",
                        "give a compiled program or a script starting with #!",
                    )
                raise SpecError(
                    f"{path}: invalid ELF header (not a shared library), needed while "
                    f"closing over {self.binary}",
                    "remove or fix that file, or correct the RPATH that leads to it",
                )
            if check_abi:
                if hdr.elf_class != self.elf_class:
                    return f"{path} (ELF{32 if hdr.elf_class == ELFCLASS32 else 64})"
                if hdr.machine != self.machine or (hdr.order == "<") != self.little:
                    return f"{path} (machine {hdr.machine})"
            info = _parse_body(fd, hdr)
        except (_Malformed, struct.error, OSError) as exc:
            raise SpecError(
                f"{path}: malformed ELF file ({exc}), needed while closing over {self.binary}",
                "reinstall the package that owns it",
            ) from None
        return _Found(path, resolved, info, (st.st_dev, st.st_ino), "")

    def try_path(self, path: str, via: str, skipped: list[str]) -> _Found | None:
        resolved = self.tree.resolve(path)
        if resolved is None:
            return None
        found = self.load(path, resolved, check_abi=True)
        if isinstance(found, str):
            skipped.append(found)
            return None
        if found is None:
            return None
        return found._replace(via=via)

    # ---- search

    def expand(self, text: str, obj: _Obj) -> str | None:
        """Substitute $ORIGIN, $LIB, $PLATFORM; None if a token cannot be expanded."""
        if "$" not in text:
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            ch = text[i]
            tok = _dst_value(text, i) if ch == "$" else None
            if tok is None:
                out.append(ch)
                i += 1
                continue
            name, length = tok
            if name == "ORIGIN":
                if obj.main:
                    self.needs_proc = True  # glibc reads /proc/self/exe for the main program
                    value = os.path.dirname(obj.real)
                else:
                    value = obj.path.rpartition("/")[0] or "/"
            elif name == "LIB":
                value = self.lib
            else:
                if self.platform is None:
                    return None
                value = self.platform
            out.append(value)
            i += length
        return "".join(out)

    def path_list(self, text: str, obj: _Obj) -> list[str]:
        dirs = []
        for element in text.split(":"):
            expanded = self.expand(element, obj)
            # Empty and relative entries mean "relative to the working directory": not ours.
            if expanded and expanded.startswith("/"):
                dirs.append(expanded)
        return dirs

    def _in_dirs(
        self, name: str, dirs: list[str], via: str, tried: list[str], skipped: list[str]
    ) -> _Found | None:
        for d in dirs:
            cand = d.rstrip("/") + "/" + name
            tried.append(d)
            found = self.try_path(cand, via, skipped)
            if found is not None:
                return found
        return None

    def search(self, name: str, loader: _Obj) -> _Found:
        tried: list[str] = []
        skipped: list[str] = []
        main = self.main
        assert main is not None
        if "/" in name:
            if not name.startswith("/"):
                raise SpecError(
                    f"{loader.path} needs {name!r}, a path relative to the working directory",
                    "relink it with a soname or an absolute path",
                )
            found = self.try_path(name, "path", skipped)
            if found is not None:
                return found
            tried.append(name)
        else:
            found = None
            if loader.info.runpath is None:
                did_main = False
                obj: _Obj | None = loader
                while obj is not None and found is None:
                    if obj.info.rpath is not None:
                        dirs = self.path_list(obj.info.rpath, obj)
                        found = self._in_dirs(name, dirs, "rpath", tried, skipped)
                        did_main |= obj is main
                    obj = obj.loader
                if found is None and not did_main and main.info.rpath is not None:
                    dirs = self.path_list(main.info.rpath, main)
                    found = self._in_dirs(name, dirs, "rpath", tried, skipped)
            if found is None and loader.info.runpath is not None:
                dirs = self.path_list(loader.info.runpath, loader)
                found = self._in_dirs(name, dirs, "runpath", tried, skipped)
            nodeflib = bool(loader.info.flags_1 & DF_1_NODEFLIB)
            if found is None:
                found = self._from_cache(name, nodeflib, tried, skipped)
            if found is None and not nodeflib:
                found = self._in_dirs(name, list(self.default_dirs), "default", tried, skipped)
            if found is not None:
                return found
        where = ", ".join(dict.fromkeys(tried)) or "nowhere"
        other = (
            f"; skipped for the wrong ELF class or machine: {', '.join(skipped)}" if skipped else ""
        )
        raise SpecError(
            f"{name}, needed by {loader.path}, not found (searched {where}){other}",
            "install the package that provides it or pass its path in extra_libraries",
        )

    def _from_cache(
        self, name: str, nodeflib: bool, tried: list[str], skipped: list[str]
    ) -> _Found | None:
        if not self.cache_loaded:
            self.cache_loaded = True
            resolved = self.tree.resolve(LD_SO_CACHE)
            if resolved is not None:
                self.cache = ldcache.load(self.tree.host(resolved.real))
                self.cache_resolved = resolved
        if self.cache is None:
            return None
        tried.append(LD_SO_CACHE)
        path = self.cache.lookup(
            name, ldcache.abi_flags(self.elf_class, self.machine, self.e_flags)
        )
        if path is None:
            return None
        in_default = any(path.startswith(d + "/") for d in self.default_dirs)
        if nodeflib and in_default:
            return None  # glibc drops cache entries under the system dirs for DF_1_NODEFLIB
        found = self.try_path(path, "ld.so.cache", skipped)
        only_cached = nodeflib or os.path.dirname(path) not in self.default_dirs
        if found is not None and only_cached and not self.uses_ldcache:
            # Only the cache leads the loader to this directory: the void must carry it.
            self.uses_ldcache = True
            self.add(LD_SO_CACHE, self.cache_resolved, self.binary, "ld.so.cache")
        return found

    # ---- graph

    def adopt(self, found: _Found, loader: _Obj | None, name: str, needed_by: str) -> _Obj | None:
        """Record a found file; a new object to scan, or None if that file is loaded already."""
        self.add(found.path, found.resolved, needed_by, found.via)
        known = self.ids.get(found.file_id)
        if known is not None:
            self.names[name] = known
            return None
        if found.info.e_type != ET_DYN:
            raise SpecError(
                f"{found.path}, needed by {needed_by}, is an executable, not a shared library",
                "fix the RPATH or library name that leads to it",
            )
        obj = _Obj(found.path, found.resolved.real, found.info, loader)
        self.register(obj, found.file_id, name)
        return obj

    def register(self, obj: _Obj, file_id: tuple[int, int], *names: str) -> None:
        if len(self.objects) >= _MAX_OBJECTS:
            raise SpecError(f"{self.binary} pulls in more than {_MAX_OBJECTS} libraries")
        self.objects.append(obj)
        self.ids[file_id] = obj
        for n in (*names, obj.path, obj.info.soname):
            if n:
                self.names.setdefault(n, obj)

    def scan(self, queue: list[_Obj]) -> None:
        """Breadth first, like _dl_map_object_deps: each object's needs in order."""
        i = 0
        while i < len(queue):
            obj = queue[i]
            i += 1
            for raw in obj.info.needed:
                name = self.expand(raw, obj)
                if name is None:
                    raise SpecError(
                        f"{obj.path}: DT_NEEDED {raw!r} uses a token the loader cannot expand",
                        "relink it without $PLATFORM or use a plain soname",
                    )
                if name in self.names:
                    continue
                new = self.adopt(self.search(name, obj), obj, name, obj.path)
                if new is not None:
                    queue.append(new)


def _read_shebang(fd: int, path: str) -> tuple[str, str | None] | None:
    """The "#!" line as the kernel's binfmt_script splits it: interpreter, optional argument."""
    head = os.pread(fd, _BINPRM_BUF, 0)
    if not head.startswith(b"#!"):
        return None
    end = head.find(b"\n")
    line = head[2:end] if end >= 0 else head[2 : _BINPRM_BUF - 1]
    line = line.strip(b" \t")
    cut = min((i for i in (line.find(c) for c in b" \t\0") if i >= 0), default=-1)
    if end < 0 and cut < 0:
        raise SpecError(f"{path}: #! interpreter path is longer than the kernel reads")
    interp, rest = (line, b"") if cut < 0 else (line[:cut], line[cut:])
    if not interp:
        raise SpecError(f"{path}: #! line names no interpreter", "write #!/path/to/interpreter")
    arg = b"" if rest.startswith(b"\0") else rest.lstrip(b" \t").split(b"\0", 1)[0]
    return interp.decode("utf-8", "surrogateescape"), (
        arg.decode("utf-8", "surrogateescape") if arg else None
    )


def closure(binary: str, extra_libraries: Sequence[str] = (), root: str = "/") -> ElfClosure:
    """Compute the files and symlinks ``binary`` needs in an empty root, without running it.

    ``binary`` is an absolute path inside ``root`` (relative paths are taken from the current
    directory when ``root`` is "/"). ``extra_libraries`` are libraries the program dlopen()s,
    by soname (searched as the binary would) or absolute path; they and their dependencies
    join the closure. Raises SpecError naming the file and the reason.
    """
    tree = _Tree(root)
    if not binary.startswith("/"):
        if tree.root != "/":
            raise SpecError(f"{binary}: give an absolute path inside {tree.root}")
        binary = os.path.abspath(binary)
    closer = _Closer(tree, binary)
    shebangs: list[tuple[str, str | None]] = []
    path, needed_by = binary, ""
    while True:
        resolved = tree.resolve(path)
        if resolved is None:
            what = f"#! interpreter of {needed_by}" if needed_by else "program"
            raise SpecError(f"{path}: no such {what}", "check the path")
        opened = _open_regular(tree.host(resolved.real))
        if opened is None:
            raise SpecError(f"{path}: not a readable regular file", "check the path")
        fd, st = opened
        try:
            script = _read_shebang(fd, path)
            if script is None:
                found = closer.load_fd(fd, st, path, resolved, check_abi=False)
                break
        finally:
            os.close(fd)
        closer.add(path, resolved, needed_by, "script")
        shebangs.append(script)
        if len(shebangs) > _MAX_SCRIPT_DEPTH:
            raise SpecError(f"{binary}: more than {_MAX_SCRIPT_DEPTH} levels of #! interpreters")
        if not script[0].startswith("/"):
            raise SpecError(
                f"{path}: #! interpreter {script[0]!r} is relative to the working directory",
                "use an absolute path",
            )
        path, needed_by = script[0], path
    assert isinstance(found, _Found)  # check_abi=False never returns a reason to skip
    info = found.info
    if info.e_type not in (ET_EXEC, ET_DYN):
        raise SpecError(f"{path}: ELF file of type {info.e_type} is not a program")
    closer.setup_abi(info)
    closer.add(path, resolved, needed_by, "binary")
    main = _Obj(path, resolved.real, info, None, main=True)
    closer.main = main
    closer.register(main, found.file_id)

    interp = info.interpreter
    if interp is not None:
        if not interp.startswith("/"):
            raise SpecError(f"{path}: relative ELF interpreter {interp!r}", "relink the program")
        skipped: list[str] = []
        rtld = closer.try_path(interp, "interpreter", skipped)
        if rtld is None:
            why = f" (wrong class or machine: {skipped[0]})" if skipped else ""
            raise SpecError(f"{path}: ELF interpreter {interp} not found{why}")
        closer.add(interp, rtld.resolved, path, "interpreter")
        rtld_obj = _Obj(interp, rtld.resolved.real, rtld.info, None)
        # The loader knows itself by PT_INTERP and by soname: libc's NEEDED on it is satisfied.
        closer.register(rtld_obj, rtld.file_id, interp)
        closer.scan([main])
    # Without PT_INTERP the kernel starts the program directly: nobody reads its DT_NEEDED.

    for extra in extra_libraries:
        if extra in closer.names:
            continue
        found_extra = closer.search(extra, main)._replace(via="dlopen")
        new = closer.adopt(found_extra, main, extra, path)
        if new is not None:
            closer.scan([new])

    links = sorted(closer.links.items(), key=lambda item: _components(item[0]))
    return ElfClosure(
        binary=binary,
        interpreter=interp,
        entries=tuple(closer.entries),
        symlinks=tuple(links),
        root=tree.root,
        shebangs=tuple(shebangs),
        needs_proc=closer.needs_proc,
        uses_ldcache=closer.uses_ldcache,
    )
