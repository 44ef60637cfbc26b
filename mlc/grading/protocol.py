"""One exercise, graded in two halves: observe (next to the student's code), judge (grader).

:func:`observe_names` and :func:`observe_case` run in the worker. They call the
student's code and wrap what it did as plain data: ``{"ok": observation}``, or
``{"error": kind, "message": ...}`` when it raised. :func:`verdict` runs in the grader on
those messages, the grader's own cases and the notebook's source, and returns the record
of the exercise: its score, always within ``[0, points]``, and a message.

Hints come in stages: an untouched stub hears only that it is not implemented yet; a
wrong answer hears what failed (which case, expected and got) and the exercise's nudge.
"""

from __future__ import annotations

import json
import traceback
from typing import Any

from .fresh import measure
from .registry import CheckFailed, Exercise, Missing, Tester, first_line
from .source import Sources
from .wire import WireError, from_plain, public, roundtrip, to_plain

NOT_IMPLEMENTED = ("not implemented yet: replace `raise NotImplementedError(...)` with "
                   "your code")


# ---- in the worker ------------------------------------------------------------------------------

def observe_names(ex: Exercise, ns: dict) -> dict:
    """For each name the exercise needs: "missing", "callable" or "value"."""
    out = {}
    for name in (*ex.needs, *ex.values):
        if name not in ns:
            out[name] = "missing"
        else:
            out[name] = "callable" if callable(ns[name]) else "value"
    return out


def observe_case(ex: Exercise, ns: dict, case: dict) -> dict:
    """Run the exercise's observe on one (public) case; never raises an Exception."""
    try:
        if ex.fresh and case.get(ex.fresh):  # a speed or traffic case: where no cell ran
            obs = measure(ex, ns, case)
        else:
            obs = ex.check.observe(ns, case)
        return {"ok": to_plain(obs)}
    except NotImplementedError:
        return {"error": "not_implemented", "message": NOT_IMPLEMENTED}
    except Missing as err:
        return {"error": "missing", "message": str(err)}
    except CheckFailed as err:
        return {"error": "failed", "message": str(err)}
    except WireError as err:
        return {"error": "failed", "message": f"{case.get('what', 'a case')}: {err}"}
    except Exception as err:  # noqa: BLE001 - the student's code may raise anything
        return {"error": "raised", "message": f"{case.get('what', 'a case')}: your code "
                f"raised {type(err).__name__}: {first_line(err)}{_where(err)}"}
    except SystemExit as err:
        return {"error": "raised", "message": f"{case.get('what', 'a case')}: your code "
                f"called sys.exit({err.code})"}


def decode_observation(obs: Any) -> Any:
    """An observation as the grader reads it off the wire (``"malformed"`` when it is not)."""
    if not isinstance(obs, dict):
        return "malformed"
    if "ok" in obs:
        try:
            return {"ok": from_plain(obs["ok"])}
        except WireError:
            return "malformed"
    return {"error": str(obs.get("error", "")), "message": str(obs.get("message", ""))}


def _where(err: BaseException) -> str:
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if "mlc/grading" not in frame.filename.replace("\\", "/"):
            return f" (in {frame.name}, line {frame.lineno})"
    return ""


# ---- in the grader ------------------------------------------------------------------------------

def record(ex: Exercise, score: float, passed: list[str], message: str,
           hint: bool = False) -> dict:
    score = min(max(float(score), 0.0), ex.points)  # never outside [0, points]
    return {"id": ex.id, "score": score, "max_score": ex.points, "passed": list(passed),
            "message": message, "hint": ex.hint if hint and score < ex.points else ""}


def verdict(ex: Exercise, cases: list[dict], names: Any, observations: list[Any],
            sources: Sources | None, failure: str | None = None) -> dict:
    """The record of ``ex`` from what the worker observed.

    ``cases`` are the grader's own (private keys included); ``observations[i]`` is the
    message for case ``i`` (missing ones are None); ``failure`` is the grader's own word
    about the run (a time-out, a crash, a tampered channel), which wins over any score.
    """
    t = Tester()
    if names is not None:
        if not isinstance(names, dict):
            return record(ex, 0, t.passed, "malformed observation of the notebook's names")
        for name in ex.needs:
            kind = names.get(name)
            if kind == "missing":
                return record(ex, 0, t.passed, f"`{name}` is not defined: run the cell that "
                              "defines it first")
            if kind != "callable":
                return record(ex, 0, t.passed, f"`{name}` should be a function")
        for name in ex.values:
            if names.get(name) != "value" and names.get(name) != "callable":
                return record(ex, 0, t.passed, f"`{name}` is not defined: run the cell that "
                              "defines it first")
        t.passed += [f"`{n}` is defined" for n in (*ex.needs, *ex.values)]
    for i, case in enumerate(cases):
        obs = observations[i] if i < len(observations) else None
        if obs is None:
            return record(ex, 0, t.passed, failure or f"{case.get('what', f'case {i}')}: "
                          "no observation arrived (the check did not finish)")
        if not isinstance(obs, dict) or ("ok" not in obs and "error" not in obs):
            return record(ex, 0, t.passed, f"{case.get('what', f'case {i}')}: malformed "
                          "observation")
        if "error" in obs:
            kind, msg = obs.get("error"), str(obs.get("message", ""))
            if kind == "not_implemented":
                return record(ex, 0, t.passed, NOT_IMPLEMENTED)
            return record(ex, 0, t.passed, msg, hint=kind != "missing")
        try:
            ex.check.judge(case, obs["ok"], t)
        except CheckFailed as err:
            return record(ex, 0, t.passed, str(err), hint=True)
        except Exception as err:  # noqa: BLE001 - an observation of an unexpected form
            return record(ex, 0, t.passed, f"{case.get('what', f'case {i}')}: your code "
                          f"returned something of an unexpected form ({type(err).__name__}: "
                          f"{first_line(err)})", hint=True)
    if failure:
        return record(ex, 0, t.passed, failure)
    if sources is not None:
        try:
            ex.check.inspect(sources, t)
        except CheckFailed as err:
            return record(ex, 0, t.passed, str(err), hint=True)
    return record(ex, ex.points, t.passed, "all cases passed")


def grade_in_process(ex: Exercise, ns: dict, sources: Sources | None) -> dict:
    """Both halves in one process: the student's own feedback from ``check()`` in a
    notebook (which the student could fool, and may: only ``mlc grade`` counts).

    Cases and observations still cross a simulated wire, so a check behaves here
    exactly as under the grader."""
    cases = ex.check.cases()
    names = roundtrip(observe_names(ex, ns))
    observations = []
    for case in cases:
        obs = decode_observation(json.loads(json.dumps(observe_case(ex, ns,
                                                                 roundtrip(public(case))))))
        observations.append(obs)
        if "error" in obs:
            break
    return verdict(ex, cases, names, observations, sources)
