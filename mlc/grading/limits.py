"""Resource caps for a grading worker: memory and processes.

A class produces every kind of notebook, including one that allocates 50 GB or forks
without end. Each worker therefore runs under two caps, so that such a notebook scores 0
with a clear note and the grader, the other workers and the machine stay up:

- **memory**: ``RLIMIT_AS`` (the address space), set in the worker before it starts.
  An allocation past it fails inside the student's code (numpy raises ``MemoryError``),
  which the grader reports as "ran out of memory".
- **processes**: the grader counts the processes of the worker's session (the worker
  starts a session of its own) every few milliseconds and stops the whole session when
  there are more than the cap. Where the kernel enforces it (an ordinary user; Linux
  exempts root), ``RLIMIT_NPROC`` is set too, to the processes this user already has
  plus the cap, so that a fork bomb fails inside the kernel before the count sees it.

Defaults are sized to the machine: an equal share of the memory per parallel worker,
at most 4 GiB each, and 64 processes. An isolated worker (:mod:`.isolate`) also gets caps
on the size of any file it writes, its open files and its CPU time, and never dumps core.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

GIB = 1 << 30


def total_memory() -> int | None:
    """Bytes of RAM on this machine, or None when the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def parse_size(text: str | int | None) -> int | None:
    """``"2G"``, ``"512M"``, ``"1.5GiB"`` or a number of bytes; ``"none"``/None for no cap."""
    if text is None or isinstance(text, int):
        return text
    t = str(text).strip().lower().removesuffix("ib").removesuffix("b")
    if t in ("", "none", "0"):
        return None
    scale = {"k": 1 << 10, "m": 1 << 20, "g": GIB, "t": 1 << 40}.get(t[-1], 1)
    number = t[:-1] if t[-1] in "kmgt" else t
    try:
        value = float(number) * scale
    except ValueError:
        raise ValueError(f"cannot read the size {text!r}: write e.g. 2G, 512M or 1000000") \
            from None
    if value <= 0:
        raise ValueError(f"a memory cap must be positive, not {text!r}")
    return int(value)


def user_processes(uid: int | None = None) -> int:
    """How many processes user ``uid`` (default: this one) has now (Linux /proc)."""
    uid = os.getuid() if uid is None else uid
    count = 0
    try:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == uid:
                        count += 1
                except OSError:
                    pass
    except OSError:
        return 0
    return count


def session_processes(sid: int) -> int:
    """How many processes belong to session ``sid`` (Linux /proc; 0 where unknown)."""
    count = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...: comm may hold spaces, so split after ')'
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            count += 1
    return count


@dataclass(frozen=True)
class Limits:
    """The caps of one worker. ``None`` means no cap."""

    memory_bytes: int | None = None
    max_processes: int | None = None
    file_bytes: int | None = 64 << 20
    open_files: int | None = 256
    cpu_seconds: int | None = None  # a backstop under the grader's wall-clock watchdog

    @classmethod
    def default(cls, jobs: int = 1) -> Limits:
        ram = total_memory()
        share = max(GIB, min(4 * GIB, ram // max(1, 2 * jobs))) if ram else 4 * GIB
        return cls(memory_bytes=share, max_processes=64)

    def describe(self) -> str:
        mem = f"{self.memory_bytes / GIB:.3g} GiB" if self.memory_bytes else "no"
        procs = self.max_processes if self.max_processes else "no"
        return f"{mem} memory cap, {procs} process cap"

    def preexec(self):
        """A function for ``subprocess.Popen(preexec_fn=...)`` that sets the kernel caps."""
        nproc = None
        if self.max_processes and os.getuid() != 0:
            nproc = user_processes() + self.max_processes
        return lambda: self.apply(nproc)

    def apply(self, nproc: int | None, files: bool = False) -> None:
        """Set the caps on this process (inherited by what it starts): memory, ``nproc``
        processes of this user, and with ``files`` the file size, open files and no core."""
        import resource

        caps = [(resource.RLIMIT_AS, self.memory_bytes), (resource.RLIMIT_NPROC, nproc)]
        if files:
            caps += [(resource.RLIMIT_FSIZE, self.file_bytes),
                     (resource.RLIMIT_NOFILE, self.open_files), (resource.RLIMIT_CORE, 0),
                     (resource.RLIMIT_CPU, self.cpu_seconds)]
        for which, value in caps:
            if value is None:
                continue
            _, hard = resource.getrlimit(which)
            cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
            keep_hard = which == resource.RLIMIT_NPROC and not files  # isolated: no raising it
            resource.setrlimit(which, (cap, hard if keep_hard else cap))
