"""Draw a graph with matplotlib alone (no graphviz): a layered, top-to-bottom layout.

The layout is the first half of the Sugiyama method: each node's *layer* is the length
of the longest path from a leaf to it (so every edge points downwards), and the nodes of
a layer are ordered by the mean position of their inputs (the barycentre heuristic), which
keeps most edges short and uncrossed. With ``fused=`` (a :class:`~mlc.graph.fuse.FusedGraph`)
each kernel gets its own colour; inputs and constants are grey.
"""

from __future__ import annotations


def layout(g) -> dict:
    """``{node: (x, y)}``: y = -layer, x = position within the layer."""
    layer: dict = {}
    for n in g.nodes:
        layer[n] = 0 if not n.inputs else 1 + max(layer[x] for x in n.inputs)
    users = g.users()
    for n in reversed(g.nodes):  # pull leaves down next to their first reader
        if n.is_leaf and users[n]:
            layer[n] = min(layer[u] for u in users[n]) - 1
    rows: dict = {}
    for n in g.nodes:
        rows.setdefault(layer[n], []).append(n)
    pos: dict = {}
    for k in sorted(rows):
        row = rows[k]
        if k > min(rows):
            def bary(n):
                xs = [pos[x][0] for x in n.inputs if x in pos]
                return sum(xs) / len(xs) if xs else 0.0
            row.sort(key=bary)
        width = len(row)
        for i, n in enumerate(row):
            pos[n] = (i - (width - 1) / 2, -k)
    return pos


def draw(g, ax=None, fused=None):
    """Draw ``g`` on ``ax`` (a new figure when None); returns the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    pos = layout(g)
    if ax is None:
        depth = 1 + max(-y for _, y in pos.values())
        width = max(abs(x) for x, _ in pos.values()) * 2 + 1
        _, ax = plt.subplots(figsize=(max(4.0, 2.2 * width), max(3.0, 0.9 * depth)))
    cmap = plt.get_cmap("tab20")
    group_of = fused.group_of if fused is not None else {}
    for n in g.nodes:
        for x in n.inputs:
            (x0, y0), (x1, y1) = pos[x], pos[n]
            # An edge that skips layers would run straight through the boxes between
            # its ends: bend it, and draw every edge under the boxes (annotations sit
            # above patches by default, which put arrows across the labels).
            # arc3 bends in display space, about rad * length / 2: past a box's half-width.
            length = abs(y0 - y1) - 0.36
            rad = 2.0 / length if round(y0 - y1) > 1 else 0.0
            ax.annotate("", xy=(x1, y1 + 0.18), xytext=(x0, y0 - 0.18), zorder=1,
                        arrowprops={"arrowstyle": "->", "color": "0.45", "lw": 0.8,
                                    "shrinkA": 0, "shrinkB": 0,
                                    "connectionstyle": f"arc3,rad={rad:.3f}"})
    for n in g.nodes:
        x, y = pos[n]
        if n.is_leaf:
            colour = "0.85"
        elif n in group_of:
            colour = cmap(group_of[n] % 20)
        else:
            colour = "#cfe2f3"
        ax.add_patch(FancyBboxPatch((x - 0.42, y - 0.18), 0.84, 0.36,
                                    boxstyle="round,pad=0.02", facecolor=colour,
                                    edgecolor="0.3", lw=0.8, zorder=2))
        label = n.name if n.is_leaf else n.op
        ax.text(x, y + 0.04, label, ha="center", va="center", fontsize=7, zorder=3)
        ax.text(x, y - 0.1, "x".join(map(str, n.shape)) or "scalar", ha="center",
                va="center", fontsize=5.5, color="0.3", zorder=3)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.0, max(xs) + 1.0)  # room for the bent edges
    ax.set_ylim(min(ys) - 0.5, max(ys) + 0.5)
    ax.set_axis_off()
    if fused is not None:
        ax.set_title(f"{fused.kernels} kernels (policy {fused.policy.name!r})", fontsize=9)
    return ax
