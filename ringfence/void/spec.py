"""Void specs: an application made of named entrypoints, each started in its own void.

Owns: reading a spec (TOML or JSON) with ``${var}`` substitution, the typed model (entrypoints,
their triggers, what each receives as argv/fds, their environment; the pipes, socket pairs and
TCP listeners that connect them), validation before anything runs (every error names the
entrypoint and the field), and turning an entrypoint into profile keys and a Plan on top of the
built-in ``void`` profile: the ELF closure of its binary, its filesystem entries, hostname and
/proc. :func:`closure_keys` is the same closure as profile keys, for ``run --add-binary``.

Must never open, bind, create or run anything: the orchestrator (``void.orchestrator``) does
that. Compiling a plan reads host metadata only (ELF headers, stat, realpath).

A spec, in TOML (JSON has the same shape)::

    [vars]                        # defaults; `ringfence void --var name=value` overrides
    address = "127.0.0.1:8443"

    [pipes.chunks]                # framing: line (default) | packet | length, see PipeDecl
    [sockets.conns]               # a unix socket pair (seqpacket; carries fds)
    [listeners.https]             # a TCP listener bound by the orchestrator
    address = "${address}"

    [entrypoints.tls]
    binary = "/usr/bin/python3"   # its ELF closure is added to the void
    trigger = "startup"           # or "pipe NAME" / "socket NAME": a fresh void per message
    args = ["-I", "-S", "/app/tls.py", { listener = "https" }, { file = "key.pem" },
            { socket = "conns" }]  # fds are placed at 3, 4, ... and their numbers put in argv
    filesystem = ["tls.py:/app/tls.py", "/usr/lib/python3.11"]  # HOST[:DEST[:rw]]
    stdin = "null"                # inherit | null | message | {file=..} | {pipe=..} | {socket=..}
    limits = { LimitNOFILE = 256 }  # resource limits only (rlimits, cgroup limits)

Other entrypoint fields: stdout/stderr (default "inherit"), tmpfs (fresh writable tmpfs
mounts), hostname (default "void"), proc (a /proc of its own, default false), libraries
(dlopen()ed libraries for the ELF closure), environment, workdir, parallel (voids at once for a
triggered entrypoint, default 1), description.

Relative host paths are relative to the spec's directory and may not leave it.
"""

from __future__ import annotations

import os
import re

from .._record import record as dataclass
from ..errors import ProfileError, SpecError

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

    from ..plan import HostContext, Plan
    from .elf import ElfClosure

# ---------------------------------------------------------------------------------------------
# The model

FILE_MODES = ("r", "w", "a", "rw")
FRAMINGS = ("line", "packet", "length")
SOCKET_TYPES = ("seqpacket", "stream")
STDIO_WORDS = ("inherit", "null", "message")

MAX_FDS = 64  # fds one void may receive through args (3 .. 3+MAX_FDS-1)
PACKET_SIZE = 4096  # PIPE_BUF: the largest message of a packet-mode pipe (pipe(7))
MAX_ARG_STRLEN = 131072  # linux/binfmts.h: the longest single argv string execve accepts
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?\Z")
_VAR = re.compile(r"\$(?:\{([^}]*)\}|(\$))")


@dataclass(frozen=True)
class Text:
    """A plain argv string."""

    value: str


@dataclass(frozen=True)
class FileRef:
    """A file the orchestrator opens (``path`` is an absolute host path) and passes as an fd."""

    path: str
    mode: str = "r"


@dataclass(frozen=True)
class PipeRef:
    name: str
    end: str  # "read" | "write"


@dataclass(frozen=True)
class SocketRef:
    name: str


@dataclass(frozen=True)
class ListenerRef:
    name: str


@dataclass(frozen=True)
class MessageRef:
    """The trigger's message: its bytes ("data") or the fds it carried ("fds")."""

    part: str


@dataclass(frozen=True)
class Inherit:
    """The orchestrator's own stdin/stdout/stderr (stdio only)."""


@dataclass(frozen=True)
class Null:
    """/dev/null, opened by the orchestrator (stdio only)."""


if TYPE_CHECKING:
    Arg = Text | FileRef | PipeRef | SocketRef | ListenerRef | MessageRef
    Stdio = Inherit | Null | MessageRef | FileRef | PipeRef | SocketRef


@dataclass(frozen=True)
class Trigger:
    kind: str  # "startup" | "pipe" | "socket"
    name: str | None = None

    def describe(self) -> str:
        return self.kind if self.name is None else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Mount:
    host: str  # absolute host path
    dest: str  # absolute, normalised path inside the void
    writable: bool = False


@dataclass(frozen=True)
class Entrypoint:
    name: str
    binary: str  # absolute host path; the same path inside the void
    args: tuple[Arg, ...] = ()
    trigger: Trigger = Trigger("startup")
    stdin: Stdio = Null()
    stdout: Stdio = Inherit()
    stderr: Stdio = Inherit()
    filesystem: tuple[Mount, ...] = ()
    tmpfs: tuple[str, ...] = ()
    hostname: str = "void"
    proc: bool = False
    libraries: tuple[str, ...] = ()  # dlopen()ed libraries, added to the ELF closure
    environment: tuple[str, ...] = ()  # NAME=VALUE
    workdir: str | None = None
    parallel: int = 1  # triggered entrypoints: how many voids may run at once
    limits: tuple[tuple[str, object], ...] = ()  # LimitNOFILE=..., MemoryMax=... (profile keys)
    description: str = ""

    def fd_args(self) -> list[tuple[int, Arg]]:
        """(payload fd number, arg) for every static fd argument, in order. Message fds (a
        socket trigger's) come after these, so the static numbers never move."""
        out: list[tuple[int, Arg]] = []
        fd = 3
        for arg in self.args:
            if isinstance(arg, (FileRef, PipeRef, SocketRef, ListenerRef)):
                out.append((fd, arg))
                fd += 1
        return out


@dataclass(frozen=True)
class PipeDecl:
    """A pipe. When a trigger reads it, ``framing`` cuts the byte stream into messages:
    "line" (one line, its newline included; left out when the message is an argv string),
    "packet" (a packet-mode pipe, pipe2(O_DIRECT): each write of up to 4096 bytes is one
    message, a longer write is several), "length" (a 4-byte big-endian length, then the bytes).
    A message longer than ``max_message`` is dropped and reported."""

    name: str
    framing: str = "line"
    max_message: int = 1 << 20


@dataclass(frozen=True)
class SocketDecl:
    name: str
    type: str = "seqpacket"
    max_fds: int = 8
    max_message: int = 1 << 16


@dataclass(frozen=True)
class ListenerDecl:
    name: str
    host: str
    port: int
    backlog: int = 128

    @property
    def family(self) -> int:
        import socket

        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def describe(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Endpoint:
    """One use of a pipe or socket: which entrypoint, which field, and which end."""

    entrypoint: str
    field: str  # "args[2]", "stdout", "trigger"
    end: str = ""  # pipes: "read" | "write"

    def describe(self) -> str:
        return f"entrypoint {self.entrypoint!r} ({self.field})"


@dataclass(frozen=True)
class Spec:
    path: str
    base_dir: str
    entrypoints: dict[str, Entrypoint]
    pipes: dict[str, PipeDecl]
    sockets: dict[str, SocketDecl]
    listeners: dict[str, ListenerDecl]
    description: str = ""

    def endpoints(self) -> dict[tuple[str, str], list[Endpoint]]:
        """Every use of each pipe ("pipe", name) and socket ("socket", name), in spec order."""
        uses: dict[tuple[str, str], list[Endpoint]] = {}
        for ep in self.entrypoints.values():
            for fieldname, ref in _refs(ep):
                if isinstance(ref, PipeRef):
                    uses.setdefault(("pipe", ref.name), []).append(
                        Endpoint(ep.name, fieldname, ref.end)
                    )
                elif isinstance(ref, SocketRef):
                    uses.setdefault(("socket", ref.name), []).append(Endpoint(ep.name, fieldname))
            t = ep.trigger
            if t.kind in ("pipe", "socket") and t.name is not None:
                uses.setdefault((t.kind, t.name), []).append(
                    Endpoint(ep.name, "trigger", "read" if t.kind == "pipe" else "")
                )
        return uses


def _refs(ep: Entrypoint) -> list[tuple[str, Arg | Stdio]]:
    out: list[tuple[str, Arg | Stdio]] = [(f"args[{i}]", a) for i, a in enumerate(ep.args)]
    out += [("stdin", ep.stdin), ("stdout", ep.stdout), ("stderr", ep.stderr)]
    return out


# ---------------------------------------------------------------------------------------------
# Reading


def load_spec(path: str, variables: dict[str, str] | None = None) -> Spec:
    """Read, substitute and validate a spec file. Raises SpecError; touches nothing but the
    file itself and, for path checks, host metadata."""
    path = os.path.abspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise SpecError(f"spec {path} does not exist") from None
    except OSError as e:
        raise SpecError(f"spec {path}: cannot read it: {e.strerror}") from None
    raw = parse_text(data, path)
    return build_spec(raw, path, variables)


def parse_text(data: bytes, path: str = "<spec>") -> dict[str, object]:
    """TOML or JSON (by extension; a document starting with '{' is JSON)."""
    is_json = path.endswith(".json") or (not path.endswith(".toml") and data.lstrip()[:1] == b"{")
    if is_json:
        import json

        def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
            out: dict[str, object] = {}
            for key, value in items:
                if key in out:
                    raise SpecError(f"spec {path}: key {key!r} appears twice in one object")
                out[key] = value
            return out

        try:
            doc = json.loads(data, object_pairs_hook=pairs)
        except ValueError as e:
            raise SpecError(f"spec {path}: invalid JSON: {e}") from None
    else:
        import tomllib

        try:
            doc = tomllib.loads(data.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SpecError(f"spec {path}: invalid TOML: {e}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"spec {path}: the document must be a table/object")
    return doc


def build_spec(raw: dict[str, object], path: str, variables: dict[str, str] | None = None) -> Spec:
    """Substitute ``${var}``s, type every field and validate the whole spec."""
    path = os.path.abspath(path)
    base = os.path.dirname(path)
    _known("spec", raw, ("description", "vars", "pipes", "sockets", "listeners", "entrypoints"))
    vars_raw = raw.get("vars", {})
    if not isinstance(vars_raw, dict):
        raise SpecError('vars: expected a table of name = "value"')
    values: dict[str, str] = {}
    for key, value in vars_raw.items():
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise SpecError(f"vars.{key}: expected a string")
        values[key] = str(value)
    for key, value in (variables or {}).items():
        if key not in values:
            raise SpecError(
                f"--var {key}: the spec declares no such variable" + _nearest(key, list(values)),
                f"declared: {', '.join(sorted(values)) or 'none'}",
            )
        values[key] = value
    doc = _substitute({k: v for k, v in raw.items() if k != "vars"}, values, "")
    assert isinstance(doc, dict)
    reader = _Reader(base)
    pipes = {n: reader.pipe(n, d) for n, d in _table(doc, "pipes").items()}
    sockets = {n: reader.socket(n, d) for n, d in _table(doc, "sockets").items()}
    listeners = {n: reader.listener(n, d) for n, d in _table(doc, "listeners").items()}
    eps_raw = _table(doc, "entrypoints")
    if not eps_raw:
        raise SpecError("entrypoints: the spec has none", "add an [entrypoints.NAME] table")
    entrypoints = {n: reader.entrypoint(n, d) for n, d in eps_raw.items()}
    description = doc.get("description", "")
    spec = Spec(
        path=path,
        base_dir=base,
        entrypoints=entrypoints,
        pipes=pipes,
        sockets=sockets,
        listeners=listeners,
        description=description if isinstance(description, str) else "",
    )
    validate(spec)
    return spec


def _substitute(value: object, values: dict[str, str], where: str) -> object:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            if m.group(2):
                return "$"
            name = m.group(1)
            if name not in values:
                raise SpecError(
                    f"{_where_text(where)}: ${{{name}}} is not a declared variable"
                    + _nearest(name, list(values)),
                    "declare it under [vars]",
                )
            return values[name]

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, values, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _where_text(where: str) -> str:
    """'entrypoints.gzip.args[1]' -> "entrypoint 'gzip', field args[1]"."""
    parts = where.split(".", 2)
    if parts[0] == "entrypoints" and len(parts) >= 2:
        field = parts[2] if len(parts) > 2 else "(table)"
        return f"entrypoint {parts[1]!r}, field {field}"
    return where


def _table(doc: dict[str, object], key: str) -> dict[str, dict[str, object]]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(f"{key}: expected a table of named entries")
    for name, item in value.items():
        if not _NAME.match(name):
            raise SpecError(
                f"{key}.{name}: invalid name", "use letters, digits, '_', '.', '-' (max 64)"
            )
        if item is None or item == "":
            value[name] = {}
        elif not isinstance(item, dict):
            raise SpecError(f"{key}.{name}: expected a table")
    return value


def _known(where: str, table: dict[str, object], keys: Sequence[str]) -> None:
    for key in table:
        if key not in keys:
            raise SpecError(
                f"{where}: unknown field {key!r}" + _nearest(key, list(keys)),
                f"known fields: {', '.join(keys)}",
            )


def _nearest(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _norm_dest(where: str, path: str) -> str:
    """A path inside the void: absolute, no '..', normalised; never the root itself."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise SpecError(f"{where}: {path!r} must be an absolute path inside the void")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SpecError(f"{where}: {path!r} escapes with '..'", "write the path without '..'")
    if not parts:
        raise SpecError(f"{where}: {path!r} is the void's root", "choose a directory under /")
    if "\0" in path or ":" in path:
        raise SpecError(f"{where}: {path!r} may not contain ':' or NUL")
    return "/" + "/".join(parts)


class _Reader:
    """Types one spec's tables; ``base`` is the spec's directory."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.base_real = os.path.realpath(base)

    def host_path(self, where: str, path: object) -> str:
        """A host path: absolute as written, or relative to the spec directory without leaving
        it (after symlinks too)."""
        if not isinstance(path, str) or not path:
            raise SpecError(f"{where}: expected a path")
        if "\0" in path or ":" in path:
            raise SpecError(f"{where}: {path!r} may not contain ':' or NUL")
        if os.path.isabs(path):
            return os.path.normpath(path)
        joined = os.path.normpath(os.path.join(self.base, path))
        real = os.path.realpath(joined)
        for candidate, top in ((joined, self.base), (real, self.base_real)):
            if os.path.commonpath([candidate, top]) != top:
                raise SpecError(
                    f"{where}: {path!r} escapes the spec's directory {self.base}",
                    "give an absolute path if you mean a file elsewhere",
                )
        return joined

    # -- declarations ------------------------------------------------------------------------
    def pipe(self, name: str, d: dict[str, object]) -> PipeDecl:
        where = f"pipes.{name}"
        _known(where, d, ("framing", "max_message"))
        framing = d.get("framing", "line")
        if framing not in FRAMINGS:
            raise SpecError(f"{where}.framing: {framing!r}: expected one of {', '.join(FRAMINGS)}")
        assert isinstance(framing, str)
        limit = 4096 if framing == "packet" else 64 << 20
        default = PACKET_SIZE if framing == "packet" else 1 << 20
        return PipeDecl(name, framing, _int(f"{where}.max_message", d, default, 1, limit))

    def socket(self, name: str, d: dict[str, object]) -> SocketDecl:
        where = f"sockets.{name}"
        _known(where, d, ("type", "max_fds", "max_message"))
        kind = d.get("type", "seqpacket")
        if kind not in SOCKET_TYPES:
            raise SpecError(f"{where}.type: {kind!r}: expected one of {', '.join(SOCKET_TYPES)}")
        assert isinstance(kind, str)
        return SocketDecl(
            name,
            kind,
            _int(f"{where}.max_fds", d, 8, 0, 253),  # SCM_MAX_FD is 253
            _int(f"{where}.max_message", d, 1 << 16, 1, 1 << 20),
        )

    def listener(self, name: str, d: dict[str, object]) -> ListenerDecl:
        where = f"listeners.{name}"
        _known(where, d, ("address", "backlog"))
        address = d.get("address")
        if not isinstance(address, str):
            raise SpecError(f'{where}.address: expected "HOST:PORT" (e.g. "127.0.0.1:8443")')
        host, port = _split_address(f"{where}.address", address)
        return ListenerDecl(name, host, port, _int(f"{where}.backlog", d, 128, 1, 65535))

    # -- entrypoints -----------------------------------------------------------------------
    def entrypoint(self, name: str, d: dict[str, object]) -> Entrypoint:
        def where(field: str) -> str:
            return f"entrypoint {name!r}, field {field}"

        keys = (
            "binary", "args", "trigger", "stdin", "stdout", "stderr", "filesystem", "tmpfs",
            "hostname", "proc", "libraries", "environment", "workdir", "parallel", "limits",
            "description",
        )  # fmt: skip
        for key in d:
            if key not in keys:
                raise SpecError(
                    f"entrypoint {name!r}: unknown field {key!r}" + _nearest(key, list(keys)),
                    f"known fields: {', '.join(keys)}",
                )
        if "binary" not in d:
            raise SpecError(f"{where('binary')}: missing", "name the program to run")
        binary = self.host_path(where("binary"), d["binary"])
        trigger = _trigger(where("trigger"), d.get("trigger", "startup"))
        args_raw = d.get("args", [])
        if not isinstance(args_raw, list):
            raise SpecError(f"{where('args')}: expected a list")
        args = tuple(self.arg(where(f"args[{i}]"), a) for i, a in enumerate(args_raw))
        stdio = {
            s: self.stdio(where(s), s, d.get(s, "null" if s == "stdin" else "inherit"))
            for s in ("stdin", "stdout", "stderr")
        }
        filesystem = tuple(
            self.mount(where(f"filesystem[{i}]"), m)
            for i, m in enumerate(_list(where("filesystem"), d.get("filesystem", [])))
        )
        tmpfs = tuple(
            _norm_dest(where(f"tmpfs[{i}]"), str(t))
            for i, t in enumerate(_list(where("tmpfs"), d.get("tmpfs", []), strings=True))
        )
        hostname = d.get("hostname", "void")
        if not isinstance(hostname, str) or not _HOSTNAME.match(hostname):
            raise SpecError(f"{where('hostname')}: {hostname!r} is not a valid host name")
        proc = d.get("proc", False)
        if not isinstance(proc, bool):
            raise SpecError(f"{where('proc')}: expected true or false")
        libraries = tuple(
            str(x) for x in _list(where("libraries"), d.get("libraries", []), strings=True)
        )
        environment = _environment(where("environment"), d.get("environment", {}))
        workdir_v = d.get("workdir")
        workdir = None if workdir_v is None else _norm_dest(where("workdir"), str(workdir_v))
        parallel = _int(where("parallel"), d, 1, 1, 256, key="parallel")
        if "parallel" in d and trigger.kind == "startup":
            raise SpecError(f"{where('parallel')}: only triggered entrypoints start many voids")
        limits = _limits(where("limits"), d.get("limits", {}))
        description = d.get("description", "")
        return Entrypoint(
            name=name,
            binary=binary,
            args=args,
            trigger=trigger,
            stdin=stdio["stdin"],
            stdout=stdio["stdout"],
            stderr=stdio["stderr"],
            filesystem=filesystem,
            tmpfs=tmpfs,
            hostname=hostname,
            proc=proc,
            libraries=libraries,
            environment=environment,
            workdir=workdir,
            parallel=parallel,
            limits=limits,
            description=description if isinstance(description, str) else "",
        )

    def arg(self, where: str, a: object) -> Arg:
        if isinstance(a, str):
            if "\0" in a:
                raise SpecError(f"{where}: argv strings may not contain NUL")
            return Text(a)
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            return Text(str(a))
        if not isinstance(a, dict):
            raise SpecError(f'{where}: expected a string or a table such as {{ file = "..." }}')
        kinds = [k for k in ("file", "pipe", "socket", "listener", "message") if k in a]
        if len(kinds) != 1:
            raise SpecError(
                f"{where}: a table argument needs exactly one of file, pipe, socket, listener, "
                "message"
            )
        kind = kinds[0]
        extra = {"file": ("mode",), "pipe": ("end",)}.get(kind, ())
        _known(where, a, (kind, *extra))
        value = a[kind]
        if kind == "file":
            return self.file(where, value, a.get("mode", "r"))
        if not isinstance(value, str) or not value:
            raise SpecError(f"{where}.{kind}: expected a name")
        if kind == "pipe":
            end = a.get("end")
            if end not in ("read", "write"):
                raise SpecError(f'{where}.end: say which end of pipe {value!r}: "read" or "write"')
            assert isinstance(end, str)
            return PipeRef(value, end)
        if kind == "socket":
            return SocketRef(value)
        if kind == "listener":
            return ListenerRef(value)
        if value not in ("data", "fds"):
            raise SpecError(f'{where}.message: {value!r}: expected "data" or "fds"')
        return MessageRef(value)

    def file(self, where: str, path: object, mode: object) -> FileRef:
        if mode not in FILE_MODES:
            raise SpecError(f"{where}.mode: {mode!r}: expected one of {', '.join(FILE_MODES)}")
        assert isinstance(mode, str)
        return FileRef(self.host_path(f"{where}.file", path), mode)

    def stdio(self, where: str, which: str, value: object) -> Stdio:
        if isinstance(value, str):
            if value == "inherit":
                return Inherit()
            if value == "null":
                return Null()
            if value == "message" and which == "stdin":
                return MessageRef("data")
            words = "inherit, null, message" if which == "stdin" else "inherit, null"
            raise SpecError(
                f"{where}: {value!r}: expected {words}, or a table {{ file | pipe | socket = ... }}"
            )
        if not isinstance(value, dict):
            raise SpecError(f"{where}: expected a string or a table")
        kinds = [k for k in ("file", "pipe", "socket") if k in value]
        if len(kinds) != 1:
            raise SpecError(f"{where}: a table needs exactly one of file, pipe, socket")
        kind = kinds[0]
        _known(where, value, (kind, *{"file": ("mode",), "pipe": ("end",)}.get(kind, ())))
        if kind == "file":
            default = "r" if which == "stdin" else "w"
            return self.file(where, value["file"], value.get("mode", default))
        name = value[kind]
        if not isinstance(name, str) or not name:
            raise SpecError(f"{where}.{kind}: expected a name")
        if kind == "socket":
            return SocketRef(name)
        end = "read" if which == "stdin" else "write"
        if value.get("end", end) != end:
            raise SpecError(f"{where}.end: {which} takes the {end} end of a pipe")
        return PipeRef(name, end)

    def mount(self, where: str, m: object) -> Mount:
        if isinstance(m, str):
            parts = m.split(":")
            if len(parts) > 3 or not parts[0]:
                raise SpecError(f"{where}: {m!r}: expected HOST[:DEST[:ro|rw]]")
            host = parts[0]
            dest = parts[1] if len(parts) > 1 and parts[1] else None
            opt = parts[2] if len(parts) > 2 else "ro"
            if opt not in ("ro", "rw"):
                raise SpecError(f"{where}: option {opt!r}: expected ro or rw")
            writable = opt == "rw"
        elif isinstance(m, dict):
            _known(where, m, ("host", "path", "writable"))
            host_v, dest_v, writable_v = m.get("host"), m.get("path"), m.get("writable", False)
            if not isinstance(host_v, str) or not isinstance(writable_v, bool):
                raise SpecError(
                    f'{where}: expected {{ host = "...", path = "...", writable = false }}'
                )
            host, writable = host_v, writable_v
            dest = dest_v if isinstance(dest_v, str) else None
        else:
            raise SpecError(f'{where}: expected "HOST[:DEST[:ro|rw]]" or a table')
        host_abs = self.host_path(where, host)
        if dest is None:
            if not os.path.isabs(host):
                raise SpecError(
                    f"{where}: {host!r} is relative: say where it goes inside the void",
                    "write HOST:DEST",
                )
            dest = host_abs
        return Mount(host_abs, _norm_dest(where, dest), writable)


def _int(where: str, d: dict[str, object], default: int, low: int, high: int,
         key: str | None = None) -> int:  # fmt: skip
    key = key or where.rpartition(".")[2]
    value = d.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SpecError(f"{where}: {value!r}: expected an integer from {low} to {high}")
    return value


def _list(where: str, value: object, strings: bool = False) -> list[object]:
    if not isinstance(value, list):
        raise SpecError(f"{where}: expected a list")
    if strings and not all(isinstance(x, str) for x in value):
        raise SpecError(f"{where}: expected a list of strings")
    return value


def _environment(where: str, value: object) -> tuple[str, ...]:
    items: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(v, (str, int)) or isinstance(v, bool):
                raise SpecError(f"{where}.{k}: expected a string")
            items.append(f"{k}={v}")
    elif isinstance(value, list):
        items = [str(x) for x in value]
    else:
        raise SpecError(f'{where}: expected a table NAME = "value"')
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or "\0" in item:
            raise SpecError(f"{where}: {item!r}: expected NAME=VALUE")
    return tuple(items)


def limit_keys() -> tuple[str, ...]:
    """Profile keys a spec may set per entrypoint: resource limits only (they can only take
    away), the rlimits and whichever cgroup limits this ringfence knows."""
    from ..kernel.rlimit import LIMIT_KEYS
    from ..profile import loader

    return (*LIMIT_KEYS, *getattr(loader, "CGROUP_KEYS", ()))


def _limits(where: str, value: object) -> tuple[tuple[str, object], ...]:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected a table such as {{ LimitNOFILE = 64 }}")
    allowed = limit_keys()
    for key, v in value.items():
        if key not in allowed:
            raise SpecError(
                f"{where}: {key!r} is not a resource limit" + _nearest(key, list(allowed)),
                f"known: {', '.join(allowed)}",
            )
        if not isinstance(v, (str, int, bool)):
            raise SpecError(f"{where}.{key}: expected a number or a string")
    return tuple(value.items())


def _trigger(where: str, value: object) -> Trigger:
    if not isinstance(value, str):
        raise SpecError(f'{where}: expected "startup", "pipe NAME" or "socket NAME"')
    words = value.split()
    if words == ["startup"]:
        return Trigger("startup")
    if len(words) == 2 and words[0] in ("pipe", "socket"):
        return Trigger(words[0], words[1])
    raise SpecError(f'{where}: {value!r}: expected "startup", "pipe NAME" or "socket NAME"')


def _split_address(where: str, address: str) -> tuple[str, int]:
    import ipaddress

    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
    else:
        host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SpecError(f"{where}: {address!r}: expected HOST:PORT (port 0 picks a free one)")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise SpecError(
            f"{where}: {host!r} is not an IP address", "use an address, e.g. 127.0.0.1 or [::1]"
        ) from None
    return str(ip), int(port)


# ---------------------------------------------------------------------------------------------
# Validation (pure: the spec's own consistency)


def validate(spec: Spec) -> None:
    """Check names, endpoints, message use and reachability. Raises the first SpecError."""
    for ep in spec.entrypoints.values():
        _validate_entrypoint(spec, ep)
    uses = spec.endpoints()
    for name in spec.pipes:
        ends = uses.get(("pipe", name), [])
        readers = [e for e in ends if e.end == "read"]
        writers = [e for e in ends if e.end == "write"]
        for role, group in (("reader", readers), ("writer", writers)):
            if not group:
                raise SpecError(
                    f"pipe {name!r} has no {role}"
                    + (f" (its {'writer' if role == 'reader' else 'reader'} is "
                       f"{(writers or readers)[0].describe()})" if ends else ""),
                    "every pipe needs exactly one reader and one writer",
                )  # fmt: skip
            if len(group) > 1:
                raise SpecError(
                    f"pipe {name!r} has {len(group)} {role}s: "
                    + " and ".join(e.describe() for e in group),
                    "every pipe needs exactly one reader and one writer",
                )
    for name, sdecl in spec.sockets.items():
        ends = uses.get(("socket", name), [])
        if len(ends) != 2:
            users = " and ".join(e.describe() for e in ends) or "nobody"
            raise SpecError(
                f"socket {name!r} is used by {len(ends)} endpoint(s) ({users})",
                "a socket pair has exactly two ends: two entrypoints, or one and a trigger",
            )
        if sdecl.type != "seqpacket" and any(e.field == "trigger" for e in ends):
            raise SpecError(
                f'socket {name!r}: a trigger needs type = "seqpacket" (message boundaries), '
                f"not {sdecl.type!r}"
            )
        if all(e.field == "trigger" for e in ends):
            raise SpecError(f"socket {name!r}: both ends are triggers; nothing can send on it")
    used_listeners = {
        a.name for ep in spec.entrypoints.values() for a in ep.args if isinstance(a, ListenerRef)
    }
    for name in spec.listeners:
        if name not in used_listeners:
            raise SpecError(f"listener {name!r} is declared but no entrypoint receives it")
    inherit_stdin = [ep.name for ep in spec.entrypoints.values() if isinstance(ep.stdin, Inherit)]
    if len(inherit_stdin) > 1:
        raise SpecError(
            f'entrypoint {inherit_stdin[1]!r}, field stdin: "inherit" is already taken by '
            f"entrypoint {inherit_stdin[0]!r}",
            "only one entrypoint may read the orchestrator's stdin",
        )
    _check_reachable(spec, uses)


def _validate_entrypoint(spec: Spec, ep: Entrypoint) -> None:
    def err(field: str, message: str, hint: str | None = None) -> SpecError:
        return SpecError(f"entrypoint {ep.name!r}, field {field}: {message}", hint)

    t = ep.trigger
    if t.kind == "pipe" and t.name not in spec.pipes:
        raise err("trigger", f"pipe {t.name!r} is not declared" + _nearest(str(t.name), list(spec.pipes)),
                  f"declare it: [pipes.{t.name}]")  # fmt: skip
    if t.kind == "socket" and t.name not in spec.sockets:
        raise err("trigger", f"socket {t.name!r} is not declared" + _nearest(str(t.name), list(spec.sockets)),
                  f"declare it: [sockets.{t.name}]")  # fmt: skip
    nfds = 0
    for field, ref in _refs(ep):
        if isinstance(ref, PipeRef) and ref.name not in spec.pipes:
            raise err(field, f"pipe {ref.name!r} is not declared" + _nearest(ref.name, list(spec.pipes)),
                      f"declare it: [pipes.{ref.name}]")  # fmt: skip
        if isinstance(ref, SocketRef) and ref.name not in spec.sockets:
            raise err(field, f"socket {ref.name!r} is not declared" + _nearest(ref.name, list(spec.sockets)),
                      f"declare it: [sockets.{ref.name}]")  # fmt: skip
        if isinstance(ref, ListenerRef) and ref.name not in spec.listeners:
            raise err(field, f"listener {ref.name!r} is not declared" + _nearest(ref.name, list(spec.listeners)),
                      f"declare it: [listeners.{ref.name}]")  # fmt: skip
        if isinstance(ref, MessageRef):
            if t.kind == "startup":
                raise err(field, "a startup entrypoint has no trigger message",
                          "use trigger = \"pipe NAME\" or \"socket NAME\"")  # fmt: skip
            if ref.part == "fds" and t.kind != "socket":
                raise err(field, "only a socket trigger's messages carry fds")
        if field.startswith("args") and isinstance(ref, (FileRef, PipeRef, SocketRef, ListenerRef)):
            nfds += 1
    if nfds > MAX_FDS:
        raise err("args", f"{nfds} file descriptors; at most {MAX_FDS}")
    dests: dict[str, str] = {}
    for i, m in enumerate(ep.filesystem):
        if m.dest in dests:
            raise err(f"filesystem[{i}]", f"{m.dest} is already the destination of {dests[m.dest]}")
        dests[m.dest] = f"filesystem[{i}]"
    for i, t_dest in enumerate(ep.tmpfs):
        if t_dest in dests:
            raise err(f"tmpfs[{i}]", f"{t_dest} is already the destination of {dests[t_dest]}")
        dests[t_dest] = f"tmpfs[{i}]"
    if ep.proc and "/proc" in dests:
        raise err("proc", f"/proc is already the destination of {dests['/proc']}")


def _check_reachable(spec: Spec, uses: dict[tuple[str, str], list[Endpoint]]) -> None:
    """An entrypoint is reachable when it starts at startup, or when whoever feeds its trigger
    (the pipe's writer, the socket's other end) is reachable."""
    reachable = {n for n, ep in spec.entrypoints.items() if ep.trigger.kind == "startup"}
    feeders: dict[str, list[Endpoint]] = {}
    for name, ep in spec.entrypoints.items():
        t = ep.trigger
        if t.kind == "startup" or t.name is None:
            continue
        ends = uses.get((t.kind, t.name), [])
        if t.kind == "pipe":
            feeders[name] = [e for e in ends if e.end == "write"]
        else:
            feeders[name] = [e for e in ends if e.field != "trigger"]
    changed = True
    while changed:
        changed = False
        for name, feeds in feeders.items():
            if name not in reachable and any(f.entrypoint in reachable for f in feeds):
                reachable.add(name)
                changed = True
    for name, ep in spec.entrypoints.items():
        if name in reachable:
            continue
        feeds = feeders.get(name, [])
        who = " or ".join(f.describe() for f in feeds) or "nobody"
        raise SpecError(
            f"entrypoint {name!r}, field trigger: unreachable: {ep.trigger.describe()!r} is fed "
            f"only by {who}, which never starts",
            'a chain of triggers must begin at an entrypoint with trigger = "startup"',
        )


# ---------------------------------------------------------------------------------------------
# Entrypoint -> profile keys -> Plan (reads host metadata, runs nothing)


def closure_keys(
    path: str, libraries: Sequence[str] = (), closure: ElfClosure | None = None
) -> dict[str, list[str]]:
    """Profile keys that add ``path``'s ELF closure to a void: read-only binds of every file,
    the loader's symlinks, and /proc when the loader needs it ($ORIGIN of the main program).

    For ``ringfence run --profile void --add-binary PATH``: merge the result into the
    overrides given to ``load_profile``.
    """
    from . import elf

    c = closure or elf.closure(path, libraries)
    binds = []
    for host, dest in elf.mount_entries(c):
        if ":" in host or ":" in dest:
            raise SpecError(
                f"ELF closure of {path}: {host} has ':' in its path, which bind entries cannot "
                "express"
            )
        binds.append(host if host == dest else f"{host}:{dest}")
    keys: dict[str, list[str]] = {"BindReadOnlyPaths": binds}
    links = [f"{target}:{link}" for link, target in c.symlinks]
    if links:
        keys["Symlinks"] = links
    if c.needs_proc:
        keys["ProcMounts"] = ["/proc"]
    return keys


def entrypoint_keys(ep: Entrypoint, closure: ElfClosure) -> dict[str, object]:
    """The profile keys layered on the built-in ``void`` profile for one entrypoint."""
    keys: dict[str, Any] = {k: list(v) for k, v in closure_keys(ep.binary, closure=closure).items()}
    for m in ep.filesystem:
        entry = m.host if m.host == m.dest else f"{m.host}:{m.dest}"
        keys.setdefault("BindPaths" if m.writable else "BindReadOnlyPaths", []).append(entry)
    if ep.tmpfs:
        keys["TemporaryFileSystems"] = list(ep.tmpfs)
    if ep.proc and "/proc" not in keys.get("ProcMounts", []):
        keys.setdefault("ProcMounts", []).append("/proc")
    keys["Hostname"] = ep.hostname
    if ep.environment:
        keys["Environment"] = list(ep.environment)
    if ep.workdir:
        keys["WorkingDirectory"] = ep.workdir
    # The part's network namespace is empty already; Landlock also refuses every TCP bind and
    # connect (a listener it is given is already bound: accept() is not affected).
    keys["AllowBind"] = []
    keys["AllowConnect"] = []
    keys.update(ep.limits)
    return keys


def static_argv(ep: Entrypoint) -> tuple[str, ...]:
    """argv as far as it is known before a message arrives (fd numbers filled in; message
    placeholders shown as <message data> / <message fds>)."""
    argv = [ep.binary]
    fd = 3
    for arg in ep.args:
        if isinstance(arg, Text):
            argv.append(arg.value)
        elif isinstance(arg, MessageRef):
            argv.append(f"<message {arg.part}>")
        else:
            argv.append(str(fd))
            fd += 1
    return tuple(argv)


@dataclass
class Compiled:
    """One entrypoint ready to launch: its closure and its plan (argv is :func:`static_argv`;
    the orchestrator replaces it per void)."""

    entrypoint: Entrypoint
    closure: ElfClosure
    plan: Plan


def compile_entrypoint(ep: Entrypoint, ctx: HostContext | None = None) -> Compiled:
    """ELF closure + profile + plan for one entrypoint. Raises SpecError naming the
    entrypoint and the field; runs nothing."""
    from ..plan import RunRequest, compile_plan
    from ..profile.loader import load_profile
    from . import elf

    def err(field: str, message: str, hint: str | None = None) -> SpecError:
        return SpecError(f"entrypoint {ep.name!r}, field {field}: {message}", hint)

    try:
        closure = elf.closure(ep.binary, ep.libraries)
    except SpecError as e:
        field = "libraries" if any(lib in e.message for lib in ep.libraries) else "binary"
        raise err(field, e.message, e.hint) from None
    for i, m in enumerate(ep.filesystem):
        if not os.path.lexists(m.host):
            raise err(f"filesystem[{i}]", f"{m.host} does not exist on the host")
    for i, arg in enumerate(ep.args):
        if isinstance(arg, FileRef) and arg.mode == "r" and not os.path.exists(arg.path):
            raise err(f"args[{i}]", f"{arg.path} does not exist on the host")
    for field in ("stdin", "stdout", "stderr"):
        ref = getattr(ep, field)
        if isinstance(ref, FileRef) and ref.mode == "r" and not os.path.exists(ref.path):
            raise err(field, f"{ref.path} does not exist on the host")
    try:
        profile = load_profile("void", entrypoint_keys(ep, closure))
        plan = compile_plan(profile, RunRequest(static_argv(ep)), ctx)
    except SpecError:
        raise
    except ProfileError as e:
        raise SpecError(f"entrypoint {ep.name!r}: {e.message}", e.hint) from None
    return Compiled(ep, closure, plan)


def compile_spec(spec: Spec, ctx: HostContext | None = None) -> dict[str, Compiled]:
    """Every entrypoint compiled, in spec order: everything that can be checked before running
    is checked here."""
    from ..plan import HostContext

    ctx = ctx or HostContext.current()
    return {name: compile_entrypoint(ep, ctx) for name, ep in spec.entrypoints.items()}


def describe_ref(ref: Arg | Stdio) -> str:
    """One line for --explain: what an fd or argv item is."""
    if isinstance(ref, Text):
        return repr(ref.value)
    if isinstance(ref, FileRef):
        return f"file {ref.path} (mode {ref.mode}, opened by the orchestrator)"
    if isinstance(ref, PipeRef):
        return f"pipe {ref.name} ({ref.end} end)"
    if isinstance(ref, SocketRef):
        return f"socket {ref.name} (one end of a unix socket pair)"
    if isinstance(ref, ListenerRef):
        return f"TCP listener {ref.name} (bound by the orchestrator)"
    if isinstance(ref, MessageRef):
        return f"the trigger's message ({ref.part})"
    if isinstance(ref, Inherit):
        return "the orchestrator's own"
    return "/dev/null (opened by the orchestrator)"


def all_fields(spec: Spec) -> Iterable[tuple[Entrypoint, str, Arg | Stdio]]:
    for ep in spec.entrypoints.values():
        for field, ref in _refs(ep):
            yield ep, field, ref
