"""What :func:`mlc.perf.count_memory` returns: the memory traffic of one kernel launch.

Per array (:class:`ArrayTraffic`): elements read, written and updated atomically, in
global memory (the kernel's arguments, in DRAM) or shared memory (on chip). Per launch
(:class:`MemoryCounts`): the totals per space, a table, and, when every access was
recorded (:class:`Access`), how well each warp's accesses coalesce into transactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .table import format_table

__all__ = ["ArrayTraffic", "Access", "MemoryCounts"]


@dataclass
class ArrayTraffic:
    """Elements read and written in one array during one launch."""

    name: str
    space: str  # "global" or "shared"
    shape: tuple
    dtype: np.dtype
    reads: int = 0
    writes: int = 0
    atomics: int = 0

    @property
    def bytes_read(self) -> int:
        return self.reads * self.dtype.itemsize

    @property
    def bytes_written(self) -> int:
        return self.writes * self.dtype.itemsize


@dataclass(frozen=True)
class Access:
    """One element access recorded with ``trace=True``.

    ``thread`` is the thread's linear index in its block (x fastest, as CUDA numbers
    lanes), ``seq`` counts that thread's accesses to this array so far (the same ``seq``
    across the threads of a warp is "the same load instruction"), ``offset`` is the byte
    address relative to the start of the array.
    """

    array: str
    kind: str  # "r" or "w"
    block: tuple
    thread: int
    seq: int
    offset: int


@dataclass
class MemoryCounts:
    """The traffic of one kernel launch, totals per memory space and per array."""

    griddim: tuple
    blockdim: tuple
    arrays: dict = field(default_factory=dict)
    accesses: list | None = None

    def _total(self, space: str, what: str) -> int:
        return sum(getattr(a, what) for a in self.arrays.values() if a.space == space)

    @property
    def global_reads(self) -> int:
        return self._total("global", "reads")

    @property
    def global_writes(self) -> int:
        return self._total("global", "writes")

    @property
    def shared_reads(self) -> int:
        return self._total("shared", "reads")

    @property
    def shared_writes(self) -> int:
        return self._total("shared", "writes")

    @property
    def global_bytes(self) -> int:
        """Bytes moved between the kernel and global memory, both directions."""
        return sum(a.bytes_read + a.bytes_written for a in self.arrays.values()
                   if a.space == "global")

    @property
    def threads(self) -> int:
        return int(np.prod(self.griddim)) * int(np.prod(self.blockdim))

    def __getitem__(self, name: str) -> ArrayTraffic:
        if name not in self.arrays:
            raise KeyError(f"no array {name!r} in this launch; arrays: {list(self.arrays)}")
        return self.arrays[name]

    def table(self) -> str:
        rows = [(a.name, a.space, "x".join(map(str, a.shape)) or "()", str(a.dtype),
                 a.reads, a.writes) for a in self.arrays.values()]
        for space in ("global", "shared"):
            rows.append((f"total {space}", "", "", "", self._total(space, "reads"),
                         self._total(space, "writes")))
        head = (f"launch grid={self.griddim} block={self.blockdim} "
                f"({self.threads} threads)\n")
        return head + format_table(rows, ["array", "space", "shape", "dtype", "reads",
                                          "writes"])

    __str__ = table

    def __repr__(self) -> str:
        return self.table()

    def transactions(self, name: str, kind: str = "r", segment_bytes: int = 128,
                     warp_size: int = 32) -> dict:
        """How well the accesses to ``name`` coalesce (needs ``trace=True``).

        The accesses of the threads of one warp with the same per-thread sequence number
        form one warp-wide load (or store). The hardware serves it with one transaction
        per distinct ``segment_bytes``-aligned segment it touches. Returns
        ``{"requests": warp-wide accesses, "transactions": segments served,
        "per_request": their ratio}``: 1 per request is perfect coalescing for 4-byte
        elements, 32 is the worst case.
        """
        segments = {key: {off // segment_bytes for off in offsets}
                    for key, offsets in self._warp_accesses(name, kind, warp_size).items()}
        requests = len(segments)
        total = sum(len(s) for s in segments.values())
        return {"requests": requests, "transactions": total,
                "per_request": total / requests if requests else 0.0}

    def bank_conflicts(self, name: str, kind: str = "r", banks: int = 32, bank_bytes: int = 4,
                       warp_size: int = 32) -> dict:
        """How many passes shared memory needs for the warp-wide accesses to ``name``.

        Shared memory is split into ``banks`` banks, successive ``bank_bytes`` words in
        successive banks; a bank serves one word per pass. One warp-wide access (the
        threads of a warp with the same sequence number, as in :meth:`transactions`)
        takes as many passes (*wavefronts*) as the busiest bank has **distinct** words
        to serve: threads reading the same word share it (a broadcast). Returns
        ``{"requests", "wavefronts", "per_request"}``: 1 per request is conflict-free; a
        32 x 32 float tile read down a column gives 32, a 32-way conflict. Needs
        ``trace=True``; the counts are what the hardware's rule gives for the recorded
        addresses, not a measurement of a device.
        """
        passes = 0
        groups = self._warp_accesses(name, kind, warp_size)
        for offsets in groups.values():
            words: dict[int, set] = {}
            for off in offsets:
                word = off // bank_bytes
                words.setdefault(word % banks, set()).add(word)
            passes += max(len(w) for w in words.values())
        return {"requests": len(groups), "wavefronts": passes,
                "per_request": passes / len(groups) if groups else 0.0}

    def _warp_accesses(self, name: str, kind: str, warp_size: int) -> dict:
        """``{(block, warp, seq): [byte offsets]}``: the warp-wide accesses to ``name``."""
        if self.accesses is None:
            raise ValueError("no trace: call count_memory(..., trace=True)")
        if kind not in ("r", "w"):
            raise ValueError(f"kind must be 'r' or 'w', got {kind!r}")
        self[name]  # a clear KeyError for an unknown array
        groups: dict[tuple, list] = {}
        for acc in self.accesses:
            if acc.array == name and acc.kind == kind:
                key = (acc.block, acc.thread // warp_size, acc.seq)
                groups.setdefault(key, []).append(acc.offset)
        return groups
