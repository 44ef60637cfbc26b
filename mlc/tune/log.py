"""The tuning log: one JSON line per measured candidate, so a search can resume.

Each line holds the workload it belongs to (a hash of the PrimFunc's text, the target
and the template), the candidate's decisions and its time in seconds (``null`` for a
failure, with the error). A later ``tune(..., log_file=same)`` reads the lines of its own
workload back, counts them as trials already done, trains its cost model on them and
never measures those decisions again. Lines of other workloads are left alone, so one
file can hold the tuning of several operators.
"""

from __future__ import annotations

import hashlib
import json
import math
import os


def workload_key(func, target: str, template_name: str) -> str:
    """A short hash naming (program, target, template)."""
    text = f"{func.script()}\n{target}\n{template_name}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class TuningLog:
    """Append-only JSON-lines log of trials for one workload."""

    def __init__(self, path, workload: str):
        self.path, self.workload = os.fspath(path), workload

    def records(self) -> list:
        """This workload's records, in file order (lines that do not parse are skipped:
        a run killed mid-write leaves half a line)."""
        if not os.path.exists(self.path):
            return []
        out = []
        with open(self.path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and rec.get("workload") == self.workload:
                    out.append(rec)
        return out

    def append(self, decisions, seconds: float, error: str | None) -> None:
        rec = {"workload": self.workload, "decisions": decisions,
               "time": seconds if math.isfinite(seconds) else None, "error": error}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
