"""The grader's side of a worker's channel: reading it, and checking it message by message.

:class:`Reader` takes the worker's JSON lines off the pipe, stamps each with the grader's
own clock and stops at a cap (a flooded channel stops the worker, the grader's memory
stays bounded); :class:`Session` turns what one run of the worker reported into the
record of each exercise, refusing anything out of place.
"""

from __future__ import annotations

import json
import os
import threading
import time

from .protocol import decode_observation, record, verdict
from .registry import Exercise
from .source import Sources, cell_label


class Reader(threading.Thread):
    """Reads the worker's channel; stamps each message with the grader's own clock."""

    MAX_LINE = 64 << 20  # a longer line is dropped as malformed
    MAX_BYTES = 256 << 20  # past either cap the worker is stopped: its channel is flooded
    MAX_MESSAGES = 50_000

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd, self.events, self.malformed, self.flooded, self.size = fd, [], 0, False, 0

    def run(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                break
            self.size += len(chunk)
            if not chunk or self.flooded:
                break
            if self.size > self.MAX_BYTES or len(self.events) > self.MAX_MESSAGES:
                self.flooded = True  # the grader sees it, stops the worker
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                self._take(line)
            if len(buf) > self.MAX_LINE:
                buf, self.malformed = b"", self.malformed + 1
        if buf:
            self.malformed += 1  # a line cut short by a kill
        os.close(self.fd)

    def _take(self, line: bytes):
        try:
            msg = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            self.malformed += 1
            return
        if isinstance(msg, dict):
            self.events.append((time.monotonic(), msg))
        else:
            self.malformed += 1

    def last_progress(self):
        for stamp, msg in reversed(self.events[:]):
            if msg.get("kind") in ("cell", "check"):
                return stamp, msg
        return None


class Session:
    """What one run of the worker reported, checked message by message.

    An exercise's observations count only between the start and the end of its own check,
    once per case, in time; anything else (a message for another exercise, a second copy,
    one that comes late or cannot be decoded) scores that exercise 0 with a note.
    """

    def __init__(self, todo: list[Exercise], cases: dict, timeouts: dict):
        self.todo = {ex.id: ex for ex in todo}
        self.cases, self.timeouts = cases, timeouts
        self.started: dict[str, float] = {}
        self.ended: dict[str, str] = {}
        self.names: dict[str, object] = {}
        self.obs: dict[str, dict[int, object]] = {i: {} for i in self.todo}
        self.tampered: dict[str, str] = {}
        self.notes: list[str] = []
        self.current: str | None = None

    def _bad(self, ex_id, why):
        if ex_id in self.todo:
            self.tampered.setdefault(ex_id, why)
        else:
            note = f"a message for {ex_id!r}, which was not asked, was ignored"
            if note not in self.notes:
                self.notes.append(note)

    def take(self, stamp: float, msg: dict) -> None:
        kind, ex_id = msg.get("kind"), msg.get("id")
        if kind == "cell":
            if msg.get("state") == "end" and msg.get("error"):
                index = msg.get("index")
                where = cell_label(index) if isinstance(index, int) else f"cell {index}"
                note = f"{where}: {msg['error']}"
                if note not in self.notes:
                    self.notes.append(str(note))
            return
        if kind not in ("check", "names", "obs") or not isinstance(ex_id, str):
            return
        if kind == "check" and msg.get("state") == "start":
            if ex_id in self.started or self.current is not None:
                self._bad(ex_id, "its check was started twice")
            elif ex_id in self.todo:
                self.started[ex_id], self.current = stamp, ex_id
            else:
                self._bad(ex_id, "not asked")
            return
        if ex_id != self.current:
            self._bad(ex_id, "a message arrived outside its own check")
            return
        if kind == "check":
            if msg.get("state") == "end":
                self.ended[ex_id] = str(msg.get("status", "ok"))
                self.current = None
            return
        if stamp > self.started[ex_id] + self.timeouts[ex_id] + 3.0:
            self._bad(ex_id, "an observation arrived after the time limit")
        elif kind == "names":
            if ex_id in self.names:
                self._bad(ex_id, "the names were reported twice")
            self.names[ex_id] = msg.get("names")
        else:
            case = msg.get("case")
            n = len(self.cases[ex_id])
            if not (isinstance(case, int) and not isinstance(case, bool) and 0 <= case < n):
                self._bad(ex_id, f"an observation for case {case!r}, which does not exist")
            elif case in self.obs[ex_id]:
                self._bad(ex_id, f"the observation of case {case} arrived twice")
            else:
                self.obs[ex_id][case] = decode_observation(msg.get("obs"))

    def result(self, ex: Exercise, sources: Sources, stuck: dict | None) -> dict | None:
        """The record of ``ex``, or None when its check never ran in this attempt."""
        if ex.id in self.tampered:
            return record(ex, 0, [], f"the grader's channel was tampered with "
                          f"({self.tampered[ex.id]}); this exercise scores 0")
        if ex.id not in self.started:
            return None
        stuck = stuck if stuck and stuck.get("id") == ex.id else None
        status = self.ended.get(ex.id, "timeout" if stuck else "crashed")
        failure = None
        if stuck and stuck.get("why"):
            failure = f"your code {stuck['why']}"
        elif status == "timeout":
            failure = f"timed out after {self.timeouts[ex.id]:g} s"
        elif status != "ok":
            failure = "your code crashed the grader's worker"
        got = self.obs[ex.id]
        observations = [got.get(i) for i in range(len(self.cases[ex.id]))]
        while observations and observations[-1] is None:
            observations.pop()
        return verdict(ex, self.cases[ex.id], self.names.get(ex.id), observations, sources,
                       failure)
