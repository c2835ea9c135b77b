"""The ELF closure: what a binary needs in an empty root, computed without running it.

Trusted system binaries are cross-checked against ldd (fine in tests, never in the product);
small programs are built with gcc in a temporary directory to exercise RPATH, RUNPATH,
$ORIGIN, DF_1_NODEFLIB and fake roots; the void tests start real programs with bubblewrap in
an empty root holding exactly the closure, as whichever user runs the suite.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.errors import SpecError
from ringfence.void import elf, ldcache
from ringfence.void.elf import ElfClosure, closure, directories, mount_entries

SYSTEM_BINARIES = ["/bin/ls", "/usr/bin/gzip", "/usr/bin/python3", "/usr/bin/openssl", "/bin/sh"]
LIBC = os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6")
HOST_INTERP = "/lib64/ld-linux-x86-64.so.2"
X86_64 = os.uname().machine == "x86_64"

needs_x86_64 = pytest.mark.skipif(not X86_64, reason="the fixtures build x86-64 programs")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A temporary directory removed at the end of the module (no stray temp dirs)."""
    with tempfile.TemporaryDirectory(prefix="rf-elf-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


@pytest.fixture
def tmp(scratch: Path, request: pytest.FixtureRequest) -> Path:
    path = scratch / re.sub(r"\W", "_", request.node.name)
    path.mkdir()
    return path


def gcc(*args: str | Path) -> None:
    subprocess.run(["gcc", *map(str, args)], check=True, capture_output=True)


def ldd_files(binary: str) -> set[str]:
    """Real files ldd reports for a trusted binary, interpreter included."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    files = set()
    for line in out.splitlines():
        m = re.search(r"=> (/\S+) \(", line) or re.match(r"\s*(/\S+) \(", line)
        if m:
            files.add(os.path.realpath(m.group(1)))
    return files


def fake_elf(path: Path, elf_class: int, machine: int) -> None:
    """A minimal valid ELF header of the given class and machine (a shared object, no code)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ident = b"\x7fELF" + bytes([elf_class, 1, 1]) + bytes(9)
    if elf_class == elf.ELFCLASS32:
        rest = struct.pack(
            "<HHIIIIIHHHHHH", elf.ET_DYN, machine, 1, 0, 0, 0, 0, 52, 32, 0, 40, 0, 0
        )
    else:
        rest = struct.pack(
            "<HHIQQQIHHHHHH", elf.ET_DYN, machine, 1, 0, 0, 0, 0, 64, 56, 0, 64, 0, 0
        )
    path.write_bytes(ident + rest)


HELLO_C = 'const char *hello(void) { return "hello from lib"; }\n'
MAIN_C = (
    "#include <stdio.h>\nconst char *hello(void);\nint main(void) { puts(hello()); return 0; }\n"
)


def build_hello(
    where: Path, *link_flags: str, lib_dir: str = "lib", name: str = "prog"
) -> tuple[Path, Path]:
    """where/bin/<name> linked against where/<lib_dir>/libhello.so.1 with the given flags."""
    (where / "bin").mkdir(parents=True, exist_ok=True)
    (where / lib_dir).mkdir(parents=True, exist_ok=True)
    src = where / "src"
    src.mkdir(exist_ok=True)
    (src / "hello.c").write_text(HELLO_C)
    (src / "main.c").write_text(MAIN_C)
    lib = where / lib_dir / "libhello.so.1"
    gcc("-shared", "-fPIC", "-Wl,-soname,libhello.so.1", "-o", lib, src / "hello.c")
    prog = where / "bin" / name
    gcc("-o", prog, src / "main.c", f"-L{where / lib_dir}", "-l:libhello.so.1", *link_flags)
    return prog, lib


def make_fake_root(root: Path) -> None:
    """A tiny merged-/usr tree: copies of the host's libc and loader, reached by symlinks.

    The loader's PT_INTERP path goes through /lib64 -> usr/lib64 and an absolute link to
    /fake/ld.so, which exists only inside the fake root: resolving it on the host would fail.
    """
    multi = root / "usr/lib/x86_64-linux-gnu"
    multi.mkdir(parents=True)
    (root / "usr/lib64").mkdir(parents=True)
    (root / "fake").mkdir()
    shutil.copy2(LIBC, multi / "libc.so.6")
    shutil.copy2(os.path.realpath(HOST_INTERP), root / "fake/ld.so")
    os.symlink("usr/lib", root / "lib")
    os.symlink("usr/lib64", root / "lib64")
    os.symlink("/fake/ld.so", root / "usr/lib64/ld-linux-x86-64.so.2")


def write_new_cache(path: Path, entries: list[tuple[str, int, str]]) -> None:
    """A glibc-ld.so.cache1.1 file with (name, flags, path) entries in the given order."""
    strings = b""
    offsets = []
    table_end = 48 + 24 * len(entries)
    for name, _flags, target in entries:
        key = table_end + len(strings)
        strings += name.encode() + b"\0"
        value = table_end + len(strings)
        strings += target.encode() + b"\0"
        offsets.append((key, value))
    header = ldcache.MAGIC_NEW + struct.pack("<IIB3xI12x", len(entries), len(strings), 2, 0)
    body = b"".join(
        struct.pack("<iIIIQ", flags, key, value, 0, 0)
        for (_n, flags, _t), (key, value) in zip(entries, offsets, strict=True)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + body + strings)


def void_run(c: ElfClosure, argv: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
    """Run argv with bubblewrap in an empty root holding only the closure's files and links."""
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--clearenv"]
    for host, dest in mount_entries(c):
        args += ["--ro-bind", host, dest]
    for link, target in c.symlinks:
        args += ["--symlink", target, link]
    args += [*extra, "--", *argv]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    probe = subprocess.run(
        ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--", "/bin/true"], capture_output=True
    )
    return probe.returncode == 0


needs_bwrap = pytest.mark.skipif(not _bwrap_works(), reason="bwrap cannot create a sandbox here")


# --------------------------------------------------------------------------- system binaries


@needs_x86_64
@pytest.mark.parametrize("binary", SYSTEM_BINARIES)
def test_closure_matches_ldd_for_trusted_binaries(binary: str) -> None:
    c = closure(binary)
    assert set(c.files()) == ldd_files(binary) | {os.path.realpath(binary)}
    assert c.interpreter == HOST_INTERP
    assert len(c.files()) == len(c.entries)  # no file twice


@needs_x86_64
@pytest.mark.parametrize("binary", SYSTEM_BINARIES)
def test_every_loader_path_reaches_its_real_file_through_the_recorded_links(binary: str) -> None:
    c = closure(binary)
    for entry in c.entries:
        assert os.path.realpath(entry.path) == entry.real
        assert not os.path.islink(entry.real)
    for link, target in c.symlinks:
        assert os.readlink(link) == target
    interp = next(e for e in c.entries if e.via == "interpreter")
    assert interp.path == HOST_INTERP  # as PT_INTERP says, not the resolved file
    # Merged /usr: the loader's path only works if the directory links exist in the void.
    if os.path.islink("/lib64"):
        assert ("/lib64", os.readlink("/lib64")) in c.symlinks


def test_mount_entries_and_links_are_ordered_parents_first() -> None:
    c = closure("/bin/ls")
    dests = [dest for _host, dest in mount_entries(c)]
    links = [link for link, _target in c.symlinks]
    for seq in (dests, links, directories(c)):
        parts = [tuple(p.split("/")) for p in seq]
        assert parts == sorted(parts)
        assert len(set(seq)) == len(seq)
    # No bind goes through a link, so the runtime may create links and binds in any order.
    for dest in dests:
        assert not any(dest.startswith(link + "/") for link in links)
    assert set(dests) == set(c.files())


# --------------------------------------------------------------------------- static, scripts


@needs_gcc
def test_static_binary_needs_only_itself(tmp: Path) -> None:
    libc_a = subprocess.run(["gcc", "-print-file-name=libc.a"], capture_output=True, text=True)
    if not os.path.isabs(libc_a.stdout.strip()):
        pytest.skip("no static libc (libc6-dev) to link against")
    (tmp / "s.c").write_text("int main(void) { return 0; }\n")
    gcc("-static", "-o", tmp / "s", tmp / "s.c")
    c = closure(str(tmp / "s"))
    assert c.static and c.interpreter is None
    assert c.files() == (str(tmp / "s"),)


def test_static_pie_ldconfig_needs_only_itself() -> None:
    described = subprocess.run(["file", "-L", "/sbin/ldconfig"], capture_output=True, text=True)
    if "static-pie" not in described.stdout:
        pytest.skip(f"/sbin/ldconfig is not static-pie here: {described.stdout.strip()}")
    c = closure("/sbin/ldconfig")
    assert c.static
    assert c.files() == (os.path.realpath("/sbin/ldconfig"),)
    assert elf.read_elf("/sbin/ldconfig").e_type == elf.ET_DYN


@needs_x86_64
def test_script_closes_over_its_interpreter(tmp: Path) -> None:
    script = tmp / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    c = closure(str(script))
    assert c.shebangs == (("/bin/sh", None),)
    assert c.entries[0].path == str(script) and c.entries[0].via == "script"
    assert set(c.files()) == {str(script)} | set(closure("/bin/sh").files())
    sh = next(e for e in c.entries if e.via == "binary")
    assert (sh.path, sh.needed_by) == ("/bin/sh", str(script))


@needs_x86_64
def test_script_chain_and_argument_are_reported(tmp: Path) -> None:
    inner = tmp / "inner"
    inner.write_text("#! /bin/sh  -e \nexec true\n")
    outer = tmp / "outer"
    outer.write_text(f"#!{inner}\n")
    c = closure(str(outer))
    assert c.shebangs == ((str(inner), None), ("/bin/sh", "-e"))
    assert {str(outer), str(inner)} <= set(c.files())


def test_shebang_is_split_like_the_kernel(tmp: Path) -> None:
    env = tmp / "env"
    env.write_text("#!/usr/bin/env\tpython3 -u \nprint(1)\n")
    assert closure(str(env)).shebangs == (("/usr/bin/env", "python3 -u"),)
    empty = tmp / "empty"
    empty.write_text("#!   \necho\n")
    with pytest.raises(SpecError, match="names no interpreter"):
        closure(str(empty))
    relative = tmp / "relative"
    relative.write_text("#!bin/sh\n")
    with pytest.raises(SpecError, match="relative to the working directory"):
        closure(str(relative))


@needs_gcc
@needs_x86_64
def test_interpreter_of_the_wrong_class_is_refused(tmp: Path) -> None:
    root = tmp / "root"
    make_fake_root(root)
    build_hello(root / "opt/app", "-Wl,-rpath,$ORIGIN/../lib")
    fake_elf(root / "fake/ld.so", elf.ELFCLASS32, elf.EM_386)
    with pytest.raises(SpecError, match=r"ELF interpreter /lib64/ld-linux-x86-64\.so\.2 .*ELF32"):
        closure("/opt/app/bin/prog", root=str(root))


def test_non_elf_file_is_a_spec_error_naming_it(tmp: Path) -> None:
    text = tmp / "notes.txt"
    text.write_text("just text\n")
    with pytest.raises(SpecError, match=re.escape(str(text)) + ".*not an ELF"):
        closure(str(text))


def test_truncated_and_missing_binaries_are_spec_errors(tmp: Path) -> None:
    truncated = tmp / "trunc"
    truncated.write_bytes(Path("/bin/true").read_bytes()[:100])
    with pytest.raises(SpecError, match="malformed ELF"):
        closure(str(truncated))
    with pytest.raises(SpecError, match="no such program"):
        closure(str(tmp / "absent"))


def test_fifo_as_binary_is_refused_without_blocking(tmp: Path) -> None:
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="not a readable regular file"):
        closure(str(fifo))


def test_hostile_header_sizes_are_refused(tmp: Path) -> None:
    """A header claiming 2^60-byte segments and tables past the end must fail fast, not hang."""
    bad = tmp / "bad"
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    hdr = struct.pack(
        "<HHIQQQIHHHHHH", elf.ET_DYN, elf.EM_X86_64, 1, 0, 64, 0, 0, 64, 56, 1, 64, 0, 0
    )
    phdr = struct.pack("<IIQQQQQQ", 2, 0, 1 << 60, 0, 0, 1 << 60, 1 << 60, 8)  # PT_DYNAMIC
    bad.write_bytes(ident + hdr + phdr)
    with pytest.raises(SpecError, match="malformed ELF"):
        closure(str(bad))


# --------------------------------------------------------------------------- search rules


@needs_gcc
@needs_x86_64
@pytest.mark.parametrize("dtags", ["--disable-new-dtags", "--enable-new-dtags"])
def test_origin_rpath_and_runpath_resolve(tmp: Path, dtags: str) -> None:
    prog, lib = build_hello(tmp / "app", f"-Wl,{dtags}", "-Wl,-rpath,$ORIGIN/../lib")
    c = closure(str(prog))
    hello = next(e for e in c.entries if e.real == str(lib))
    assert hello.path == f"{tmp}/app/bin/../lib/libhello.so.1"
    assert hello.via == ("rpath" if dtags == "--disable-new-dtags" else "runpath")
    assert c.needs_proc  # glibc expands the main program's $ORIGIN from /proc/self/exe
    assert LIBC in c.files()


@needs_gcc
@needs_x86_64
@pytest.mark.parametrize(
    ("token", "guesses"),
    [
        ("${ORIGIN}/../$LIB", ["lib64", "lib/x86_64-linux-gnu"]),
        ("$ORIGIN/../p/${PLATFORM}", ["p/i686", "p/x86_64"]),
    ],
)
def test_dynamic_string_tokens_expand_like_the_loader(
    tmp: Path, token: str, guesses: list[str]
) -> None:
    """Where the real loader finds the library (our own build: trusted) is where we find it."""
    prog, lib = build_hello(tmp / "app", f"-Wl,-rpath,{token}", lib_dir="build")
    for guess in guesses:
        target = tmp / "app" / guess
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(lib, target / "libhello.so.1")
        lib = target / "libhello.so.1"
        if subprocess.run([prog], capture_output=True).returncode == 0:
            break
    else:
        pytest.fail(f"the real loader found libhello.so.1 in none of {guesses} for {token}")
    c = closure(str(prog))
    hello = next(e for e in c.entries if e.path.endswith("libhello.so.1"))
    assert hello.real == str(lib)


@needs_gcc
@needs_x86_64
def test_rpath_serves_indirect_needs_but_runpath_does_not(tmp: Path) -> None:
    """ld.so rule: RPATH of the loaders applies down the chain, RUNPATH only to direct needs."""
    lib = tmp / "lib"
    lib.mkdir()
    (tmp / "inner.c").write_text("int inner(void) { return 7; }\n")
    (tmp / "outer.c").write_text("int inner(void);\nint outer(void) { return inner(); }\n")
    (tmp / "m.c").write_text("int outer(void);\nint main(void) { return outer() != 7; }\n")
    gcc("-shared", "-fPIC", "-Wl,-soname,libinner.so", "-o", lib / "libinner.so", tmp / "inner.c")
    gcc("-shared", "-fPIC", "-Wl,-soname,libouter.so", "-o", lib / "libouter.so", tmp / "outer.c",
        f"-L{lib}", "-linner")  # fmt: skip
    for dtags in ("--disable-new-dtags", "--enable-new-dtags"):
        prog = tmp / dtags
        gcc("-o", prog, tmp / "m.c", f"-L{lib}", "-louter", f"-Wl,{dtags}", f"-Wl,-rpath,{lib}")
        real = subprocess.run([prog], capture_output=True, text=True)  # our own build: trusted
        if dtags == "--disable-new-dtags":
            assert real.returncode == 0
            c = closure(str(prog))
            inner = next(e for e in c.entries if e.path.endswith("libinner.so"))
            assert (inner.via, inner.needed_by) == ("rpath", f"{lib}/libouter.so")
        else:
            assert "libinner.so" in real.stderr
            with pytest.raises(SpecError, match=r"libinner\.so, needed by .*libouter\.so"):
                closure(str(prog))


@needs_gcc
@needs_x86_64
def test_missing_library_error_names_library_binary_and_dirs(tmp: Path) -> None:
    prog, lib = build_hello(tmp / "app", "-Wl,-rpath,/nonexistent/dir")
    lib.unlink()
    with pytest.raises(SpecError) as err:
        closure(str(prog))
    msg = str(err.value)
    assert "libhello.so.1" in msg and str(prog) in msg
    assert "/nonexistent/dir" in msg and "/etc/ld.so.cache" in msg and "/usr/lib" in msg


@needs_gcc
@needs_x86_64
def test_wrong_class_or_machine_libraries_are_skipped(tmp: Path) -> None:
    wrong32, wrong_arm, good = tmp / "i386", tmp / "arm64", tmp / "good"
    prog, _ = build_hello(tmp / "app", f"-Wl,-rpath,{wrong32}:{wrong_arm}:{good}")
    fake_elf(wrong32 / "libhello.so.1", elf.ELFCLASS32, elf.EM_386)
    fake_elf(wrong_arm / "libhello.so.1", elf.ELFCLASS64, elf.EM_AARCH64)
    good.mkdir()
    shutil.copy2(tmp / "app/lib/libhello.so.1", good / "libhello.so.1")
    c = closure(str(prog))
    hello = next(e for e in c.entries if e.path.endswith("libhello.so.1"))
    assert hello.real == str(good / "libhello.so.1")
    (good / "libhello.so.1").unlink()
    (tmp / "app/lib/libhello.so.1").unlink()
    with pytest.raises(SpecError, match=r"wrong ELF class or machine: .*i386.*ELF32.*arm64"):
        closure(str(prog))


@needs_gcc
@needs_x86_64
def test_nodefaultlib_keeps_the_loader_out_of_system_dirs(tmp: Path) -> None:
    prog, _ = build_hello(tmp / "app", "-Wl,-z,nodefaultlib", "-Wl,-rpath,$ORIGIN/../lib")
    real = subprocess.run([prog], capture_output=True, text=True)  # our own build: trusted
    assert "libc.so.6" in real.stderr  # the real loader refuses too
    with pytest.raises(SpecError, match=r"libc\.so\.6, needed by"):
        closure(str(prog))


@needs_x86_64
def test_extra_libraries_are_closed_over_by_soname_and_path() -> None:
    base = set(closure("/usr/bin/gzip").files())
    c = closure("/usr/bin/gzip", ["libssl.so.3"])
    added = set(c.files()) - base
    assert {os.path.basename(f).split(".so")[0] for f in added} == {"libssl", "libcrypto"}
    ssl = next(e for e in c.entries if e.path.endswith("libssl.so.3"))
    by_path = closure("/usr/bin/gzip", [ssl.path])
    assert set(by_path.files()) == set(c.files())
    with pytest.raises(SpecError, match=r"libdoesnotexist\.so\.9"):
        closure("/usr/bin/gzip", ["libdoesnotexist.so.9"])


# --------------------------------------------------------------------------- fake roots


@needs_gcc
@needs_x86_64
def test_fake_root_resolves_links_inside_the_root(tmp: Path) -> None:
    root = tmp / "root"
    make_fake_root(root)
    build_hello(root / "opt/app", "-Wl,-rpath,$ORIGIN/../lib")
    c = closure("/opt/app/bin/prog", root=str(root))
    assert c.root == str(root)
    assert all(f.startswith(f"{root}/") for f in c.files())
    assert {c.sandbox_path(f) for f in c.files()} == {
        "/opt/app/bin/prog",
        "/opt/app/lib/libhello.so.1",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",  # found in a default dir: no cache in this root
        "/fake/ld.so",
    }
    assert ("/usr/lib64/ld-linux-x86-64.so.2", "/fake/ld.so") in c.symlinks
    assert ("/lib64", "usr/lib64") in c.symlinks
    assert not c.uses_ldcache


@needs_gcc
@needs_x86_64
def test_symlinks_cannot_escape_the_root(tmp: Path) -> None:
    root = tmp / "root"
    make_fake_root(root)
    build_hello(root / "opt/app", "-Wl,-rpath,$ORIGIN/../lib")
    escape = "../" * 12 + "usr/lib/x86_64-linux-gnu/libz.so.1"  # exists on the host only
    os.symlink(escape, root / "opt/app/lib/libesc.so.1")
    os.symlink("/usr/lib/x86_64-linux-gnu/libz.so.1", root / "opt/app/lib/libabs.so.1")
    assert os.path.exists(root / "opt/app/lib/libesc.so.1")  # on the host it does resolve
    for name in ("libesc.so.1", "libabs.so.1"):
        with pytest.raises(SpecError, match=re.escape(name) + ".*not found"):
            closure("/opt/app/bin/prog", [f"/opt/app/lib/{name}"], root=str(root))
    os.symlink("../" * 12 + "usr/lib/x86_64-linux-gnu/libc.so.6", root / "opt/app/lib/libc2.so")
    c = closure("/opt/app/bin/prog", ["/opt/app/lib/libc2.so"], root=str(root))
    assert c.files().count(f"{root}/usr/lib/x86_64-linux-gnu/libc.so.6") == 1


@needs_gcc
@needs_x86_64
def test_ldcache_entries_for_another_abi_are_ignored(tmp: Path) -> None:
    root = tmp / "root"
    make_fake_root(root)
    prog, _ = build_hello(root / "opt/app", lib_dir="build")
    fake_elf(root / "lib32/libhello.so.1", elf.ELFCLASS32, elf.EM_386)
    (root / "opt/vendor").mkdir(parents=True)
    shutil.move(root / "opt/app/build/libhello.so.1", root / "opt/vendor/libhello.so.1")
    write_new_cache(
        root / "etc/ld.so.cache",
        [
            ("libhello.so.1", ldcache.FLAG_ELF_LIBC6, "/lib32/libhello.so.1"),
            ("libhello.so.1", ldcache.FLAG_ELF_LIBC6 | ldcache.FLAG_X8664_LIB64, "/opt/vendor/libhello.so.1"),
        ],
    )  # fmt: skip
    c = closure("/opt/app/bin/prog", root=str(root))
    hello = next(e for e in c.entries if e.path.endswith("libhello.so.1"))
    assert (hello.path, hello.via) == ("/opt/vendor/libhello.so.1", "ld.so.cache")
    # /opt/vendor is known only to the cache: the void must carry it for its loader.
    assert c.uses_ldcache
    assert f"{root}/etc/ld.so.cache" in c.files()


# --------------------------------------------------------------------------- ld.so.cache


def test_ldcache_parser_agrees_with_ldconfig() -> None:
    cache = ldcache.load("/etc/ld.so.cache")
    assert cache is not None
    listed = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=True)
    lines = [ln for ln in listed.stdout.splitlines() if ln.startswith("\t")]
    ours = [f"\t{e.name} ({ldcache.describe_flags(e.flags)}) => {e.path}" for e in cache.entries]
    assert ours == lines
    assert ldcache.load("/etc/ld.so.cache") is cache  # parsed once per process


@needs_x86_64
def test_ldcache_finds_libc() -> None:
    cache = ldcache.load("/etc/ld.so.cache")
    assert cache is not None
    path = cache.lookup("libc.so.6", ldcache.abi_flags(elf.ELFCLASS64, elf.EM_X86_64))
    assert path is not None and os.path.realpath(path) == LIBC
    assert cache.lookup("libc.so.6", ldcache.abi_flags(elf.ELFCLASS32, elf.EM_386)) is None


def test_ldcache_flags_select_the_abi(tmp: Path) -> None:
    entries = [
        ("libfoo.so.1", 0x0003, "/lib/i386-linux-gnu/libfoo.so.1"),
        ("libfoo.so.1", 0x0303, "/lib/x86_64-linux-gnu/libfoo.so.1"),
        ("libfoo.so.1", 0x0A03, "/lib/aarch64-linux-gnu/libfoo.so.1"),
        ("libbar.so.2", 0x0001, "/opt/any/libbar.so.2"),
    ]
    write_new_cache(tmp / "new.cache", entries)
    cache = ldcache.load(str(tmp / "new.cache"))
    assert cache is not None and cache.format == "new"
    x86_64 = ldcache.abi_flags(elf.ELFCLASS64, elf.EM_X86_64)
    assert cache.lookup("libfoo.so.1", x86_64) == "/lib/x86_64-linux-gnu/libfoo.so.1"
    assert cache.lookup("libfoo.so.1", ldcache.abi_flags(elf.ELFCLASS32, elf.EM_386)) == (
        "/lib/i386-linux-gnu/libfoo.so.1"
    )
    assert cache.lookup("libfoo.so.1", ldcache.abi_flags(elf.ELFCLASS64, elf.EM_AARCH64)) == (
        "/lib/aarch64-linux-gnu/libfoo.so.1"
    )
    assert cache.lookup("libbar.so.2", x86_64) == "/opt/any/libbar.so.2"  # plain ELF: any ABI
    assert cache.lookup("libfoo.so.2", x86_64) is None


def test_ldcache_old_format_and_garbage(tmp: Path) -> None:
    names = [("libold.so.1", 0x0303, "/lib/libold.so.1")]
    strings = b"libold.so.1\0/lib/libold.so.1\0"
    old = ldcache.MAGIC_OLD + b"\0" + struct.pack("=I", 1) + struct.pack("=iII", 0x0303, 0, 12)
    (tmp / "old.cache").write_bytes(old + strings)
    cache = ldcache.load(str(tmp / "old.cache"))
    assert cache is not None and cache.format == "old"
    assert [(e.name, e.flags, e.path) for e in cache.entries] == names
    (tmp / "junk.cache").write_bytes(ldcache.MAGIC_NEW + b"\xff" * 40)
    assert ldcache.load(str(tmp / "junk.cache")) is None  # the loader would ignore it too
    assert ldcache.load(str(tmp / "absent.cache")) is None


# --------------------------------------------------------------------------- the void


@needs_bwrap
@needs_x86_64
@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["/usr/bin/gzip", "--version"], "gzip"),
        (["/bin/ls", "/"], "lib64"),
        (["/usr/bin/openssl", "version"], "OpenSSL"),
    ],
)
def test_closure_is_enough_to_run_in_an_empty_root(argv: list[str], expect: str) -> None:
    c = closure(argv[0])
    done = void_run(c, argv)
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout
    if argv[0] == "/bin/ls":
        # The root holds nothing but the closure: its top level is exactly these names.
        tops = {dest.split("/")[1] for _h, dest in mount_entries(c)}
        tops |= {link.split("/")[1] for link, _t in c.symlinks}
        assert set(done.stdout.split()) == tops


@needs_bwrap
@needs_x86_64
def test_void_without_the_closure_libc_cannot_start_gzip() -> None:
    """Control: the void really is empty, so dropping one closure file breaks the program."""
    c = closure("/usr/bin/gzip")
    kept = tuple(e for e in c.entries if e.real != LIBC)
    done = void_run(ElfClosure(c.binary, c.interpreter, kept, c.symlinks), ["/usr/bin/gzip", "-V"])
    assert done.returncode != 0
    assert "libc.so.6" in done.stderr


@needs_bwrap
@needs_x86_64
def test_python_runs_in_the_void_with_its_stdlib() -> None:
    c = closure("/usr/bin/python3")
    stdlib = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    done = void_run(c, ["/usr/bin/python3", "-c", "print(1)"], "--ro-bind", stdlib, stdlib)
    assert (done.returncode, done.stdout) == (0, "1\n"), done.stderr


@needs_bwrap
@needs_gcc
@needs_x86_64
def test_origin_program_runs_in_the_void_only_with_proc(tmp: Path) -> None:
    prog, _ = build_hello(tmp / "app", "-Wl,-rpath,$ORIGIN/../lib")
    os.chmod(tmp, 0o755)
    c = closure(str(prog))
    assert c.needs_proc
    with_proc = void_run(c, [str(prog)], "--proc", "/proc")
    assert (with_proc.returncode, with_proc.stdout) == (0, "hello from lib\n"), with_proc.stderr
    without = void_run(c, [str(prog)])
    assert without.returncode != 0 and "libhello.so.1" in without.stderr


@needs_bwrap
@needs_gcc
@needs_x86_64
def test_fake_root_closure_runs_in_the_void(tmp: Path) -> None:
    root = tmp / "root"
    make_fake_root(root)
    build_hello(root / "opt/app", "-Wl,-rpath,$ORIGIN/../lib")
    c = closure("/opt/app/bin/prog", root=str(root))
    done = void_run(c, ["/opt/app/bin/prog"], "--proc", "/proc")
    assert (done.returncode, done.stdout) == (0, "hello from lib\n"), done.stderr


@needs_bwrap
@needs_x86_64
def test_script_runs_in_the_void(tmp: Path) -> None:
    script = tmp / "hi.sh"
    script.write_text("#!/bin/sh\necho hi from $0\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    done = void_run(closure(str(script)), [str(script)])
    assert (done.returncode, done.stdout) == (0, f"hi from {script}\n"), done.stderr
