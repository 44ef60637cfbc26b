"""The trace: every primitive a Schedule ran, replayable and printable as Python.

Each call is an :class:`Instruction` (its name, its arguments with handles in place, its
outputs and, for sampling primitives, the decision taken). ``str(trace)`` is the Python
that made the schedule::

    b0 = sch.get_block("C")
    l1, l2, l3 = sch.get_loops(b0)
    v4, v5 = sch.sample_perfect_tile(l1, n=2, max_innermost_factor=16, decision=[2, 4])
    l6, l7 = sch.split(l1, factors=[v4, v5])

``trace.apply_to(fresh_schedule)`` runs the same calls on another schedule of the same
PrimFunc, mapping each recorded handle to the new one; ``with_decision`` changes one
sampling decision first (how a tuner mutates a candidate).
"""

from __future__ import annotations

from .state import BlockRV, IntRV, LoopRV

SAMPLING = ("sample_perfect_tile", "sample_categorical")


class Instruction:
    __slots__ = ("kind", "args", "kwargs", "outputs", "decision")

    def __init__(self, kind, args, kwargs, outputs, decision=None):
        self.kind, self.args, self.kwargs = kind, tuple(args), dict(kwargs)
        self.outputs, self.decision = outputs, decision

    def output_list(self) -> list:
        if self.outputs is None:
            return []
        return list(self.outputs) if isinstance(self.outputs, (list, tuple)) else [self.outputs]


def _is_rv(x) -> bool:
    return isinstance(x, (BlockRV, LoopRV, IntRV))


class Trace:
    """The list of instructions a Schedule ran, in order."""

    def __init__(self, insts=None):
        self.insts: list = list(insts or [])

    def append(self, inst: Instruction) -> None:
        self.insts.append(inst)

    def __len__(self):
        return len(self.insts)

    def __iter__(self):
        return iter(self.insts)

    def copy(self) -> "Trace":
        return Trace(self.insts)

    @property
    def decisions(self) -> dict:
        """Instruction index -> decision, for every sampling instruction."""
        return {i: inst.decision for i, inst in enumerate(self.insts) if inst.kind in SAMPLING}

    def with_decision(self, index: int, decision) -> "Trace":
        """A copy of the trace where sampling instruction ``index`` decides ``decision``."""
        inst = self.insts[index]
        if inst.kind not in SAMPLING:
            raise ValueError(f"instruction {index} ({inst.kind}) is not a sampling primitive")
        insts = list(self.insts)
        insts[index] = Instruction(inst.kind, inst.args, inst.kwargs, inst.outputs, decision)
        return Trace(insts)

    # ------------------------------------------------------------------ printing
    def _names(self) -> dict:
        names, n = {}, 0
        for inst in self.insts:
            for o in inst.output_list():
                prefix = "b" if isinstance(o, BlockRV) else "l" if isinstance(o, LoopRV) else "v"
                names[id(o)] = f"{prefix}{n}"
                n += 1
        return names

    def as_python(self) -> list:
        """One line of Python per instruction."""
        names = self._names()

        def show(x):
            if _is_rv(x) and id(x) in names:
                return names[id(x)]
            if isinstance(x, IntRV):
                return str(int(x))
            if isinstance(x, (list, tuple)):
                return "[" + ", ".join(show(y) for y in x) + "]"
            if isinstance(x, str):
                return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
            return repr(x)

        lines = []
        for inst in self.insts:
            parts = [show(a) for a in inst.args]
            parts += [f"{k}={show(v)}" for k, v in inst.kwargs.items()]
            if inst.kind in SAMPLING:
                parts.append(f"decision={inst.decision!r}")
            call = f"sch.{inst.kind}({', '.join(parts)})"
            outs = inst.output_list()
            if not outs and isinstance(inst.outputs, (list, tuple)):
                lines.append(call)
            elif isinstance(inst.outputs, (list, tuple)):
                lhs = ", ".join(names[id(o)] for o in outs)
                lines.append(f"{lhs} = {call}" if len(outs) > 1 else f"[{lhs}] = {call}")
            elif outs:
                lines.append(f"{names[id(outs[0])]} = {call}")
            else:
                lines.append(call)
        return lines

    def __str__(self):
        return "\n".join(self.as_python())

    def __repr__(self):
        return f"Trace({len(self.insts)} instructions)\n{self}"

    # ------------------------------------------------------------------ replay
    def apply_to(self, sch, decisions: dict | None = None):
        """Run these instructions on ``sch`` (a Schedule of the same PrimFunc); returns it.

        ``decisions`` (instruction index -> decision) overrides recorded decisions.
        """
        rvmap: dict = {}

        def remap(x):
            if _is_rv(x):
                if id(x) in rvmap:
                    return rvmap[id(x)]
                if isinstance(x, IntRV):
                    return int(x)
                raise ValueError(f"the trace uses {x!r}, which none of its instructions made")
            if isinstance(x, (list, tuple)):
                return type(x)(remap(y) for y in x)
            return x

        decisions = decisions or {}
        for i, inst in enumerate(self.insts):
            args = [remap(a) for a in inst.args]
            kwargs = {k: remap(v) for k, v in inst.kwargs.items()}
            if inst.kind in SAMPLING:
                kwargs["decision"] = decisions.get(i, inst.decision)
            out = getattr(sch, inst.kind)(*args, **kwargs)
            new = out if isinstance(out, (list, tuple)) else [] if out is None else [out]
            for old, nw in zip(inst.output_list(), new, strict=False):
                rvmap[id(old)] = nw
        return sch
