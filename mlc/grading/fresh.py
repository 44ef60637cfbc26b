"""Measurements the notebook cannot script: a speed or traffic case observed afresh.

In the worker, the student's cells have run: they may have replaced ``mlc.perf.timeit``,
``time.perf_counter``, ``mlc.perf.count_memory`` or what either relies on (the clock, the
counting arrays, the simulator's classes), started a thread, installed a profiler. A
measurement taken there measures whatever the notebook arranged. So a check's measured
case is not observed in the worker but by :func:`measure`, in a process that

1. imports the checks, ``mlc.perf``, the clock and Numba (its CUDA simulator too, under
   the worker's ``NUMBA_ENABLE_CUDASIM``) *before* any of the student's code exists in it;
2. seals ``mlc.grading`` and the library code the exercise rebuilds, as the worker does,
   and makes ``mlc.perf.timeit`` put back the real timer and clock before every call (a
   function that patches them while it is timed changes nothing after);
3. runs only the student's *definitions* (the source of the functions the exercise needs,
   as the notebook wrote them, what they use, and numeric constants such as ``TILE``),
   none of the notebook's other cells, then puts back whatever loading them changed in
   the instruments (:mod:`.instruments`: a decorator or a default argument runs code);
4. calls the check's ``observe`` on the case and writes the plain-data result
   (:mod:`.wire`) to a pipe.

Starting Python and importing all that takes about two seconds, too long to pay once per
case (unit 04 has thirteen). So the worker starts one clean interpreter (``python -I``,
its ``mlc.grading`` read from the worker's memory, never the disk), a *server* that does
step 1 once and then, per case, forks a child that does steps 2-4 and supervises it (its
own deadline, a cap on what it sends). The server runs no student code; each child
starts from the server's untouched state, so what one case's code did is gone in the next.

An exercise asks for this with ``@exercise(..., fresh="speed")`` (or ``"traffic"``): its
cases that have that key are observed this way (:func:`mlc.grading.protocol.observe_case`).

The worker forwards that result as the case's observation; the grader judges it as
before. What the student's function does *during* its measured call still runs in the
process that measures it: a fresh process narrows the reach to that one call.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from .extract import definitions
from .instruments import snapshot
from .isolate import prime_numba_cache
from .registry import CheckFailed, Missing
from .wire import from_plain, to_plain

# as the worker started, before any cell could change them
_ENV, _PYTHON, _POPEN = dict(os.environ), sys.executable, subprocess.Popen
_TOP = os.path.dirname(os.path.abspath(__file__))


def freeze_environment(start: bool = False) -> None:
    """The environment every fresh process gets from now on: the worker calls this once
    it is set up (its private Numba cache, its HOME), before the notebook's first cell;
    with ``start``, the measuring server starts now, so that its imports overlap the
    notebook's cells (each exercise's fork of the worker then uses it)."""
    _ENV.clear()
    _ENV.update(os.environ)
    if start:
        _server()


def _read_bundle() -> dict[str, str]:
    """The text of every module of ``mlc.grading``, read at import: an isolated worker
    imports its checks first and then cannot read these files any more (they are
    hollowed), so the fresh process gets them from the worker, not from the disk."""
    out = {}
    for root, _, files in os.walk(_TOP):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    out[os.path.relpath(os.path.join(root, name), _TOP)] = f.read()
    return out


_BUNDLE = _read_bundle()

# The server's first code: serve mlc.grading from the bundle (the first frame on stdin),
# then serve().
_BOOT = """
import importlib.abc, importlib.util, json, os, sys
job = json.loads(sys.stdin.buffer.read(int(sys.stdin.buffer.read(16))))
bundle, top = job.pop("bundle"), job.pop("top")
class Bundle(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name != "mlc.grading" and not name.startswith("mlc.grading."):
            return None
        rel = name[len("mlc.grading."):].replace(".", "/") if "." in name[4:] else ""
        for key, package in ((os.path.join(rel, "__init__.py"), True), (rel + ".py", False)):
            if key in bundle:
                spec = importlib.util.spec_from_loader(name, self, is_package=package,
                                                       origin=os.path.join(top, key))
                spec.has_location = True
                if package:
                    spec.submodule_search_locations = [os.path.dirname(spec.origin)]
                return spec
        return None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        origin = module.__spec__.origin
        exec(compile(bundle[os.path.relpath(origin, top)], origin, "exec"), vars(module))
sys.meta_path.insert(0, Bundle())
from mlc.grading import fresh
sys.exit(fresh.serve(sys.argv[1:]))
"""


_monotonic = time.monotonic  # bound before any student code runs in this process
_FRAME = 16  # a frame is its length in 16 decimal digits, then that many bytes
_MAX_REPLY = 64 << 20  # bytes one child may send: unit 04's largest observation is ~100 kB


def _frame(message: dict, nonce: str = "") -> bytes:
    data = nonce.encode("ascii") + json.dumps(message).encode("utf-8")
    return b"%016d" % len(data) + data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_until(fd: int, deadline: float, limit: int = _MAX_REPLY) -> bytes | None:
    """Everything written to pipe ``fd`` until its writer closes it, or None at ``deadline``
    or past ``limit`` bytes (the fd is closed either way)."""
    chunks, size = [], 0
    with os.fdopen(fd, "rb", buffering=0) as f, selectors.DefaultSelector() as sel:
        sel.register(f, selectors.EVENT_READ)
        while True:
            left = deadline - _monotonic()
            if left <= 0 or not sel.select(left):
                return None
            chunk = f.read(1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return None


def _read_exact(fd: int, n: int, deadline: float) -> bytes | None:
    """``n`` bytes from pipe ``fd`` (left open), or None at ``deadline``; EOFError when
    its writer has closed it first."""
    chunks = []
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while n > 0:
            left = deadline - _monotonic()
            if left <= 0 or not sel.select(left):
                return None
            chunk = os.read(fd, min(n, 1 << 16))
            if not chunk:
                raise EOFError("the writer closed the pipe")
            chunks.append(chunk)
            n -= len(chunk)
    return b"".join(chunks)


class _Server:
    """The worker's handle on the measuring server (see the module docstring). The forks
    of the worker that observe the exercises, one at a time, share the worker's server;
    each reply carries its job's nonce, so a reply that a killed fork left unread is
    never taken for the next job's."""

    def __init__(self):
        self.owner, self.closed = os.getpid(), False
        env = dict(_ENV)
        env.pop("MLC_GRADING", None)
        # None of the worker's cached code (its cache folder is the student's to write), but
        # the package's own compiled kernels, copied from their in-tree caches: compiling
        # them all again took minutes per speed case. The server removes it when it ends.
        self.cache = tempfile.mkdtemp(prefix="mlc-fresh-numba-")
        prime_numba_cache(Path(_TOP).parent, Path(self.cache))
        env["NUMBA_CACHE_DIR"] = self.cache
        self.errors = tempfile.TemporaryFile()  # not a pipe: a chatty child cannot block
        self.read, write = os.pipe()
        # a session of its own: stopping it stops the child observing a case with it (a
        # killed server would leave a hung student loop spinning, reparented to init)
        self.proc = _POPEN([_PYTHON, "-I", "-c", _BOOT, str(write)], stdin=subprocess.PIPE,
                           stdout=subprocess.DEVNULL, stderr=self.errors, pass_fds=(write,),
                           env=env, start_new_session=True)
        os.close(write)
        self.send({"top": _TOP, "bundle": _BUNDLE})

    def send(self, message: dict) -> None:
        """Raises OSError when the server has ended."""
        if self.closed:
            raise BrokenPipeError("the measuring server was stopped")
        self.proc.stdin.write(_frame(message))
        self.proc.stdin.flush()

    def ask(self, job: dict, timeout: float) -> bytes | None:
        """The reply to ``job``, or None if none came within ``timeout`` seconds; OSError
        or EOFError when the server has ended."""
        nonce = os.urandom(16).hex()
        self.send({**job, "nonce": nonce})
        deadline = _monotonic() + timeout
        try:
            while (head := _read_exact(self.read, _FRAME, deadline)) is not None:
                data = _read_exact(self.read, int(head), deadline)
                if data is None or data[:len(nonce)] == nonce.encode():
                    return data and data[len(nonce):]
        except BaseException:  # the exercise's time limit: the job must not outlive it
            self.close()  # (and keep the server busy for the next exercise)
            raise
        return None

    def _kill(self) -> None:
        """SIGKILL to the server's process group: the server and its children."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            if self.proc.poll() is None:
                self.proc.kill()

    def said(self) -> str:
        """The last line the server (or a child) wrote to stderr."""
        self.errors.seek(max(0, self.errors.seek(0, 2) - 4000))
        lines = self.errors.read().decode("utf-8", "replace").strip().splitlines()
        return f": {lines[-1][:300]}" if lines else ""

    def close(self) -> None:
        """Stop it (from its owner; a fork of the owner only kills it)."""
        if self.closed:
            return
        self.closed = True
        self._kill()
        if self.owner != os.getpid():
            return
        self.proc.wait()
        for f in (self.proc.stdin, self.errors):
            f.close()
        os.close(self.read)
        shutil.rmtree(self.cache, ignore_errors=True)


_SERVER: list[_Server] = []  # this process's server (or its parent's), once started


def _server() -> _Server:
    if not _SERVER:
        _SERVER.append(_Server())
    return _SERVER[0]


def _ask(job: dict, timeout: float) -> bytes | None:
    """The server's reply to ``job``; a server that has ended (a cell or an earlier case
    may have killed it) is replaced once, one that does not answer is stopped."""
    for _ in range(2):
        server = _server()
        try:
            data = server.ask(job, timeout)
        except (OSError, EOFError):  # it has ended: a new one gets the job
            _SERVER.remove(server)
            server.close()
            continue
        if data is None:
            said = server.said()
            _SERVER.remove(server)
            server.close()
            raise CheckFailed(f"{job['what']}: the fresh process that measures it gave "
                              f"no result{said}")
        return data
    raise CheckFailed(f"{job['what']}: the fresh process that measures it ended twice "
                      "without a result")


_RAISE = {"missing": Missing, "not_implemented": NotImplementedError}


def measure(ex, ns: dict, case: dict, timeout: float = 120.0):
    """``ex.check.observe(fresh_ns, case)`` of exercise ``ex``, run in a fresh process on
    the student's definitions (see the module docstring). What the check raises there
    (:class:`CheckFailed`, :class:`Missing`, ``NotImplementedError``) is raised here."""
    job = {"id": ex.id, "case": to_plain(case), "timeout": timeout,
           "what": str(case.get("what", "the measured case")),
           "source": definitions(ns, ex.needs, ex.values)}
    reply = json.loads(_ask(job, timeout + 30.0))  # the server's own deadline: `timeout`
    if "error" in reply:
        raise _RAISE.get(reply.get("kind"), CheckFailed)(str(reply["error"]))
    return from_plain(reply["ok"])


def _guard_timer(worker: dict, real, restore) -> None:
    """Make ``mlc.perf.timeit`` put back the real timer, clock and itself before each
    call: a function that patches them while it is timed changes nothing after."""

    def timeit(*args, **kwargs):
        restore()
        return real(*args, **kwargs)

    timeit.__doc__, timeit.__wrapped__ = real.__doc__, real
    for name in ("mlc.perf", "mlc.perf.timing"):
        module, saved = worker["perf"][name]
        module.timeit = saved["timeit"] = timeit


def serve(argv: list[str]) -> int:
    """The server (``_BOOT``): import what every measurement needs, then fork a child per
    job framed on stdin and send back its reply, framed, on the pipe ``argv[0]``."""
    import mlc.perf.timing  # noqa: F401 - the real one, imported before the student's code

    from . import runner
    from .isolate import non_dumpable
    from .registry import all_exercises

    non_dumpable()  # its children (the student's code) cannot write its memory
    runner.prepare({"exercises": []})  # IPython, the wire, mlc.perf
    all_exercises()  # every check, with what it imports (numba.cuda among them)
    fd, stdin = int(argv[0]), sys.stdin.buffer
    try:
        while len(head := stdin.read(_FRAME)) == _FRAME:
            job = json.loads(stdin.read(int(head)))
            _write_all(fd, _frame(_supervise(job, fd), str(job["nonce"])))
    finally:
        shutil.rmtree(os.environ.get("NUMBA_CACHE_DIR") or "/nonexistent", ignore_errors=True)
    return 0


def _supervise(job: dict, fd: int) -> dict:
    """Observe ``job`` in a child of this server; its reply, or what went wrong."""
    import importlib

    from .registry import get

    what = job["what"]
    for dotted in get(job["id"]).rebuilds:  # imported here once, not in each child
        importlib.import_module(dotted.partition(":")[0])
    folder = tempfile.mkdtemp(prefix="mlc-fresh-")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            _child(job, folder, write, fd)
        finally:
            os._exit(0)
    os.close(write)
    data = _read_until(read, _monotonic() + float(job["timeout"]))
    if data is None:  # a loop that never ends (or a recursion) must not hang the worker
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(folder, ignore_errors=True)
    if data is None:
        return {"error": f"{what}: no result within {float(job['timeout']):.0f} s (or "
                         "a result too large to be one)", "kind": "failed"}
    try:
        return json.loads(data)
    except ValueError:
        return {"error": f"{what}: the fresh process that measures it ended without a "
                         f"result (exit status {status})", "kind": "failed"}


def _child(job: dict, folder: str, reply: int, server_fd: int) -> None:
    """Seal, run the definitions, observe the case, and write the result to ``reply``."""
    import mlc.perf.timing

    from . import runner

    # the server's channels are not the student's to read or write
    os.close(server_fd)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the whole process
    worker = runner.prepare({"exercises": [{"id": job["id"]}]})
    observe = worker["exercises"][job["id"]].check.observe
    case, encode = from_plain(job["case"]), to_plain
    runner.seal(worker)  # also snapshots mlc.perf and the clock
    _guard_timer(worker, mlc.perf.timing.timeit, lambda: runner._restore_perf(worker))
    instruments = snapshot()  # what loading the definitions may not change
    path = os.path.join(folder, "definitions.py")  # a file: Numba's cache=True needs one
    with open(path, "w", encoding="utf-8") as f:
        f.write(job["source"])
    try:
        module = types.ModuleType("definitions")  # Numba finds globals through it
        module.__file__ = path
        sys.modules[module.__name__] = module
        exec(compile(job["source"], path, "exec"), vars(module))  # noqa: S102 - the defs
        instruments.restore()  # a decorator or a default argument may have patched them
        out = {"ok": encode(observe(vars(module), case))}
    except NotImplementedError:
        out = {"error": "not implemented", "kind": "not_implemented"}
    except Missing as err:
        out = {"error": str(err), "kind": "missing"}
    except CheckFailed as err:
        out = {"error": str(err), "kind": "failed"}
    except Exception as err:  # noqa: BLE001 - the student's code may raise anything
        out = {"error": f"{case.get('what', 'the measured case')}: your code raised "
                        f"{type(err).__name__}: {str(err).strip()[:200]}", "kind": "failed"}
    _write_all(reply, json.dumps(out).encode("utf-8"))
