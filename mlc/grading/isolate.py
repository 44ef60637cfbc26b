"""Isolation of a grading worker: what an instructor's grading (``--roster``, the course
platform's bundle, ``mlc grade --isolate``) runs the student's code inside.

A worker started by :mod:`mlc.grading.grader` is an ordinary process of the grader's
user, so without this its code could write the grader's memory (``/proc/<ppid>/mem``),
edit the installed package, leave a daemon behind, read or rewrite classmates'
notebooks and signal the other workers. Isolated, each worker is started through
``unshare`` (util-linux; the kernel's namespaces, as bubblewrap and container runtimes
use them) and this module's :func:`main` runs first inside the new namespaces:

- **its own PID namespace** (``--pid --fork --mount-proc``): the worker is process 1 of
  a tree that sees only itself in ``/proc``, so the grader, other workers and their
  channels cannot be named, signalled or traced; when process 1 dies the kernel kills
  everything left in the tree, a ``setsid`` daemon included;
- **its own mount namespace**: every mount is made read-only (the package, the venv, the
  grader's files), a fresh size-capped ``tmpfs`` is its ``/tmp`` (its private temporary
  directory, ``/tmp/work``, is its working directory), and empty read-only ``tmpfs``
  mounts hide the class's folder, the output folder, the course checkout's other folders
  (``solutions/``) and the home directories. After the grading code is imported, every
  file of ``mlc/grading`` reads as empty, so no check can be read from disk;
- **another user**: as root (a course platform, CI) the worker drops to an unprivileged
  user (``nobody`` or one the instructor names) and can no longer change a mount; on an
  instructor's laptop (not root) an unprivileged *user* namespace gives the same mounts,
  after which the worker drops every capability, so it cannot undo them;
- **caps** (:mod:`.limits`): address space, processes, file size, open files, no core;
  the wall time is the grader's watchdog.

Where none of this is available (macOS, a kernel without user namespaces, a container
that forbids ``unshare``), :func:`detect` raises :class:`IsolationUnavailable` with the
reason, and roster grading refuses unless told ``--unsafe``.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .limits import Limits

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
_LOCKED = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38
FILES_CAP = 16 << 20  # bytes of the student's own data files copied into /tmp/work
# RLIMIT_NPROC counts threads, and Numba's CUDA simulator runs one per GPU thread: the
# worker user's cap is its processes (Limits.max_processes) plus this many threads.
THREADS = 2048


class IsolationUnavailable(RuntimeError):
    """This system cannot isolate a grading worker; the message says why."""


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def non_dumpable() -> None:
    """Mark this process non-dumpable: no other process of the same user may read or write
    its memory through ``/proc/<pid>/mem`` or ptrace it (Linux; a no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


@dataclass(frozen=True)
class Isolation:
    """How workers are isolated on this machine (see :func:`detect`)."""

    unshare: str  # the unshare program
    userns: bool  # not root: an unprivileged user namespace
    uid: int  # the worker's user (root mode)
    gid: int
    user: str
    tmp_bytes: int = 256 << 20

    def describe(self) -> str:
        how = (f"as user {self.user!r}" if not self.userns else
               "in an unprivileged user namespace, without capabilities")
        return (f"each worker isolated {how}: own PID and mount namespaces, read-only "
                f"system, private /tmp of {self.tmp_bytes >> 20} MiB, classmates hidden")

    def command(self, job: Path, hide: list[Path], files: list[Path], limits: Limits,
                fd: int, nproc: int | None) -> list[str]:
        """The argv that starts a worker: ``unshare`` then :func:`main` in the namespaces,
        which reads ``job`` and the student's ``files``, then hides ``hide`` and more."""
        spec = {"job": str(job), "iso": asdict(self), **_layout(hide),
                "files": [str(p) for p in files], "limits": asdict(limits), "fd": fd,
                "nproc": nproc, "grading": str(Path(__file__).resolve().parent)}
        argv = [self.unshare, "--fork", "--pid", "--mount", "--mount-proc",
                "--propagation", "private", "--kill-child"]
        if self.userns:
            argv += ["--user", "--map-root-user"]
        return argv + [sys.executable, "-m", "mlc.grading.isolate", json.dumps(spec)]


def detect(user: str | None = None) -> Isolation:
    """The isolation this system offers, tried once for real; :class:`IsolationUnavailable`
    with the reason when there is none. ``user`` is the worker's user when run as root
    (default ``nobody``); a non-root grader cannot change user and ignores it."""
    if not sys.platform.startswith("linux"):
        raise IsolationUnavailable(f"worker isolation needs Linux namespaces; this is "
                                   f"{sys.platform}")
    prog = shutil.which("unshare")
    if prog is None:
        raise IsolationUnavailable("the `unshare` program (util-linux) is not installed")
    root = os.geteuid() == 0
    if root:
        name = user or "nobody"
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise IsolationUnavailable(f"no user {name!r} on this system to run workers "
                                       "as (create it, or name another with --user)") from None
        if entry.pw_uid == 0:
            raise IsolationUnavailable(f"user {name!r} is root; name an unprivileged user")
        iso = Isolation(prog, False, entry.pw_uid, entry.pw_gid, name)
    else:
        iso = Isolation(prog, True, os.getuid(), os.getgid(), pwd.getpwuid(os.getuid())[0])
    probe = iso.command(Path(), [], [], Limits(), 1, None)[:-4] + ["true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise IsolationUnavailable(f"`unshare` cannot run here: {err}") from None
    if done.returncode != 0:
        raise IsolationUnavailable("this system refuses new namespaces ("
                                   + (done.stderr.strip().splitlines() or ["?"])[-1] + ")")
    return iso


# ---- what is hidden from a worker -------------------------------------------------------------

def _minimal(paths) -> list[str]:
    """``paths`` without those inside another one of them."""
    out: list[Path] = []
    for p in sorted({Path(p) for p in paths}, key=lambda p: len(p.parts)):
        if not any(q == p or q in p.parents for q in out):
            out.append(p)
    return [str(p) for p in out]


def _needed() -> list[str]:
    """What a worker must still read: the interpreter's installation, the venv, the package."""
    import mlc

    prefixes = [Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)]
    paths = [*prefixes, Path(sys.executable).resolve().parent,
             Path(mlc.__file__).resolve().parent]
    paths += [Path(p).resolve() for p in sys.path if p and any(
        q in Path(p).resolve().parents for q in prefixes)]
    return _minimal(p for p in paths if p.exists())


def _layout(extra: list[Path]) -> dict:
    """The folders to *hide* (``extra``: the class, the output, the grader's temporary
    folder; and the course checkout or a home directory that holds nothing the worker
    needs) and those to *rebuild*: a home or checkout that holds the venv or the package
    is replaced by an empty folder with only those bound back in."""
    import mlc

    needed = _needed()
    tops = [Path(mlc.__file__).resolve().parents[1], Path.home().resolve(), Path("/home"),
            Path("/root")]
    hide = [Path(p).resolve() for p in extra]
    rebuild = []
    for top in _minimal(t for t in tops if t.is_dir() and t != Path("/")):
        inside = [n for n in needed if Path(top) in Path(n).parents]
        if any(Path(n) == Path(top) or Path(n) in Path(top).parents for n in needed):
            continue  # the interpreter lives right here: leave it whole
        (rebuild if inside else hide).append(top)
    return {"needed": needed, "hide": _minimal(hide), "rebuild": [str(p) for p in rebuild]}


# ---- inside the namespaces (process 1 of the new PID namespace) ------------------------------

def _mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    libc = _libc()
    ok = libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                    ctypes.c_ulong(flags), data.encode() if data else None)
    if ok != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _mount_points() -> list[tuple[str, int]]:
    """Every mount point with the flags that a remount must keep."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            flags = sum(v for k, v in _LOCKED.items() if k in fields[5].split(","))
            out.append((point, flags))
    return out


def _read_only_everything() -> None:
    for point, flags in sorted(_mount_points()):
        try:
            _mount("none", point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:
            pass  # /proc, /sys and friends: nothing of the course to write there


def _drop_capabilities() -> None:
    """Clear this thread's capabilities (and keep them cleared across exec)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    libc = _libc()
    for cap in range(64):  # the bounding set first, while CAP_SETPCAP is still held
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    data = (Data * 2)()
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _rebuild(top: str, keep: list[str], data: str = "size=64k,mode=0755",
             read_only: bool = False) -> None:
    """Replace folder ``top`` by an empty tmpfs (``data``: its options) that holds only
    ``keep`` (bound back in; ``read_only``: those binds remounted read-only)."""
    fds = [os.open(k, os.O_PATH | os.O_DIRECTORY) for k in keep]  # before top vanishes
    _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, data)
    for path, fd in zip(keep, fds, strict=True):
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
        if read_only:
            _mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _inside(top: str, paths: list[str]) -> list[str]:
    return [p for p in paths if p.startswith(top.rstrip("/") + "/")]


def _hollow(top: str) -> None:
    """Replace every file under ``top`` by an empty one. Unlike hiding the folder, this
    keeps each path there: Numba's cache looks for the source file of a cached kernel
    that a check compiles later (it finds it, empty, and compiles afresh)."""
    tree = [(root, dirs, files) for root, dirs, files in os.walk(top)]
    _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for root, dirs, files in tree:
        for d in dirs:
            os.makedirs(os.path.join(root, d), mode=0o755, exist_ok=True)
        for f in files:
            open(os.path.join(root, f), "wb").close()
    _mount("none", top, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _enter(spec: dict) -> dict[str, bytes]:
    """Read the student's files, hide and freeze the file system. Returns the files."""
    files: dict[str, bytes] = {}
    total = 0
    for name in spec["files"]:
        p = Path(name)
        if p.is_file() and not p.is_symlink() and total + p.stat().st_size <= FILES_CAP:
            files[p.name] = p.read_bytes()
            total += len(files[p.name])
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    for top in spec["rebuild"]:
        _rebuild(top, _inside(top, spec["needed"]))
    _read_only_everything()
    for path in spec["hide"]:
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=000")
    iso = spec["iso"]
    for tmp in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(tmp):  # a venv or checkout under /tmp (as in CI) is bound back
            _rebuild(tmp, _inside(tmp, spec["needed"]), read_only=True,
                     data=f"size={iso['tmp_bytes'] if tmp == '/tmp' else 1 << 20},mode=1777")
    os.makedirs("/tmp/work", mode=0o700)
    for name, data in files.items():
        Path("/tmp/work", name).write_bytes(data)
    if not iso["userns"]:
        for root, dirs, names in os.walk("/tmp/work"):
            for n in [root, *[os.path.join(root, x) for x in dirs + names]]:
                os.chown(n, iso["uid"], iso["gid"])
    return files


def _become_worker(spec: dict) -> None:
    iso = spec["iso"]
    limits = Limits(**spec["limits"])
    limits.apply(spec["nproc"], files=True)
    _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if iso["userns"]:
        _drop_capabilities()
    else:
        os.setgroups([])
        os.setgid(iso["gid"])
        os.setuid(iso["uid"])
    os.chdir("/tmp/work")
    os.environ.update(HOME="/tmp/work", TMPDIR="/tmp", PYTHONDONTWRITEBYTECODE="1",
                      IPYTHONDIR="/tmp/work/.ipython", MPLCONFIGDIR="/tmp/work/.matplotlib",
                      NUMBA_CACHE_DIR="/tmp/work/.numba")
    sys.dont_write_bytecode = True
    prime_numba_cache(Path(spec["grading"]).parent, Path("/tmp/work/.numba"))


def prime_numba_cache(package: Path, cache: Path) -> None:
    """Copy the package's compiled Numba kernels where this worker's Numba looks for them
    (its in-tree caches are read-only here, and compiling them again costs minutes)."""
    import hashlib

    for folder in package.rglob("__pycache__"):
        # (a hollowed folder's files read empty: an empty index would break Numba's loading)
        kernels = [f for f in folder.iterdir()
                   if f.suffix in (".nbi", ".nbc") and f.stat().st_size > 0]
        if not kernels:
            continue
        source = str(folder.parent)  # Numba's name for a source folder's cache (CACHE_DIR)
        target = cache / f"{folder.parent.name}_{hashlib.sha1(source.encode()).hexdigest()}"
        target.mkdir(parents=True, exist_ok=True)
        for f in kernels:
            shutil.copyfile(f, target / f.name)


def main(argv: list[str] | None = None) -> int:
    from . import runner

    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    send = runner.Channel(int(spec["fd"]))
    try:
        job = json.loads(Path(spec["job"]).read_text(encoding="utf-8"))
        _enter(spec)
        worker = runner.prepare(job)  # imports every check before they are hidden
        _hollow(spec["grading"])
        _become_worker(spec)
    except BaseException as err:  # noqa: BLE001 - fail closed, and say why
        send(kind="runner", state="error", error=f"the worker could not be isolated: "
             f"{type(err).__name__}: {err}")
        return 1
    return runner.serve(job, worker, send)


if __name__ == "__main__":
    sys.exit(main())
