"""Workflow diagrams as inline SVG: a small layered (Sugiyama-style) layout of the data-flow graph.

The report must open offline, so it cannot load mermaid.js; instead :func:`workflow_svg` lays out
:func:`flowsteer.workflow.graph.to_networkx`'s graph itself. Layers are longest paths from ``__start__``
(loop back edges ignored); an edge spanning several layers gets invisible waypoints so it bends
around the nodes in between; each layer is ordered once, top-down, by the mean position of its
predecessors. Loop back edges are drawn as dashed arcs on the right of the diagram.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

import networkx as nx

from flowsteer.operators.registry import OperatorRegistry, default_registry
from flowsteer.workflow.graph import END, START, to_networkx
from flowsteer.workflow.ir import Workflow

__all__ = ["workflow_svg", "ROLE_COLOURS"]

ROLE_COLOURS: Mapping[str, str] = {
    "planning": "#dbeafe", "solving": "#dcfce7", "checking": "#fef3c7",
    "revising": "#fee2e2", "ensembling": "#ede9fe", "formatting": "#e5e7eb",
}
"""Fill colour of an operator box by its role (unknown operators are white)."""

_CHAR_W = 7.2  # average glyph width of 12px sans-serif, enough to size boxes without a font engine
_NODE_H = 30
_PITCH = 62  # vertical distance between layers
_GAP = 26  # horizontal gap between neighbours in a layer
_MARGIN = 16


@dataclass
class _Box:
    name: str
    kind: str
    text: str
    width: float
    layer: int
    x: float = 0.0
    title: str = ""
    fill: str = "#ffffff"
    order_key: float = 0.0

    @property
    def y(self) -> float:
        return _MARGIN + self.layer * _PITCH + _NODE_H / 2


@dataclass
class _Layout:
    boxes: dict[str, _Box] = field(default_factory=dict)
    paths: list[tuple[list[str], str]] = field(default_factory=list)
    """Forward edges as the box names they pass through (waypoints included) and their label."""
    back: list[tuple[str, str, str]] = field(default_factory=list)
    """Loop back edges: (route, head, label)."""


def _text_of(name: str, data: Mapping[str, Any]) -> tuple[str, str]:
    kind = data["kind"]
    label = str(data.get("label", name))
    match kind:
        case "operator":
            return str(data["operator"]), label + (f"\n{data['prompt']}" if data.get("prompt") else "")
        case "route" if data.get("structure") == "loop":
            return f"repeat ≤ {data.get('max_iterations', '?')}", label
        case "route":
            return label.split(": ", 1)[-1], label
        case "join":
            return "", label
        case _:
            return label, label


def _width(kind: str, text: str) -> float:
    match kind:
        case "join":
            return 14.0
        case "route":
            return len(text) * _CHAR_W + 44
        case _:
            return len(text) * _CHAR_W + 24


def _layers(graph: nx.DiGraph) -> tuple[nx.DiGraph, dict[str, int]]:
    forward = nx.DiGraph()
    forward.add_nodes_from(graph.nodes)
    forward.add_edges_from((u, v) for u, v, back in graph.edges(data="loop") if not back)
    layer: dict[str, int] = {}
    for node in nx.topological_sort(forward):
        layer[node] = max((layer[p] + 1 for p in forward.predecessors(node)), default=0)
    return forward, layer


def _build(graph: nx.DiGraph, registry: OperatorRegistry) -> _Layout:
    forward, layer = _layers(graph)
    layout = _Layout()
    for name, data in graph.nodes(data=True):
        text, title = _text_of(name, data)
        box = _Box(name, data["kind"], text, _width(data["kind"], text), layer[name], title=title)
        if data["kind"] == "operator" and data["operator"] in registry:
            box.fill = ROLE_COLOURS.get(registry.get(data["operator"]).role.value, "#ffffff")
        layout.boxes[name] = box
    for u, v, data in graph.edges(data=True):
        label = str(data.get("branch", ""))
        if data.get("loop"):
            layout.back.append((u, v, "repeat"))
            continue
        chain = [u]
        for step in range(layer[u] + 1, layer[v]):  # waypoints so long edges go around nodes
            dummy = f"{u}->{v}#{step}"
            layout.boxes[dummy] = _Box(dummy, "dummy", "", 8.0, step)
            chain.append(dummy)
        chain.append(v)
        layout.paths.append((chain, label))
    _place(layout, list(graph.nodes))
    return layout


def _place(layout: _Layout, insertion: list[str]) -> None:
    rank = {name: i for i, name in enumerate(insertion)}
    preds: dict[str, list[str]] = {}
    for chain, _ in layout.paths:
        for a, b in zip(chain, chain[1:], strict=False):
            preds.setdefault(b, []).append(a)
    by_layer: dict[int, list[_Box]] = {}
    for box in layout.boxes.values():
        by_layer.setdefault(box.layer, []).append(box)
    for number in sorted(by_layer):
        row = by_layer[number]
        for box in row:
            xs = [layout.boxes[p].x for p in preds.get(box.name, [])]
            box.order_key = sum(xs) / len(xs) if xs else 0.0
        row.sort(key=lambda b: (b.order_key, rank.get(b.name.split("->")[0], 0)))
        _spread(row)


def _spread(row: list[_Box]) -> None:
    """Put each box under its predecessors' mean, then push neighbours apart (keeping the order)
    and shift the row so that, on average, boxes sit where they wanted to."""
    wanted = [b.order_key for b in row]
    xs = list(wanted)
    for i in range(1, len(row)):  # left to right: no overlap
        xs[i] = max(xs[i], xs[i - 1] + (row[i - 1].width + row[i].width) / 2 + _GAP)
    shift = (sum(wanted) - sum(xs)) / len(xs)
    xs = [x + shift for x in xs]
    for i in range(len(row) - 2, -1, -1):  # right to left after the shift: still no overlap
        xs[i] = min(xs[i], xs[i + 1] - (row[i].width + row[i + 1].width) / 2 - _GAP)
    for box, x in zip(row, xs, strict=True):
        box.x = x


def _shape(box: _Box, dx: float) -> str:
    x, y, w, h = box.x + dx, box.y, box.width, _NODE_H
    title = f"<title>{escape(box.title)}</title>"
    css = ' class="fs-light"' if box.kind in ("start", "end") else ""
    text = (f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle"{css}>{escape(box.text)}</text>'
            if box.text else "")
    match box.kind:
        case "start" | "end":
            body = (f'<rect x="{x - w / 2:.1f}" y="{y - h / 2:.1f}" width="{w:.1f}" height="{h}" rx="15" '
                    'class="fs-terminal"/>')
        case "join":
            body = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" class="fs-join"/>'
        case "route":
            points = f"{x - w / 2:.1f},{y:.1f} {x:.1f},{y - h / 2 - 2:.1f} {x + w / 2:.1f},{y:.1f} {x:.1f},{y + h / 2 + 2:.1f}"
            body = f'<polygon points="{points}" class="fs-route"/>'
        case "operator":
            body = (f'<rect x="{x - w / 2:.1f}" y="{y - h / 2:.1f}" width="{w:.1f}" height="{h}" rx="5" '
                    f'fill="{box.fill}" class="fs-op"/>')
        case _:
            return ""
    return f"<g>{title}{body}{text}</g>"


def _edge_svg(layout: _Layout, chain: list[str], label: str, dx: float) -> str:
    boxes = [layout.boxes[n] for n in chain]
    points = [(boxes[0].x + dx, boxes[0].y + _half_h(boxes[0]))]
    points += [(b.x + dx, b.y) for b in boxes[1:-1]]
    points.append((boxes[-1].x + dx, boxes[-1].y - _half_h(boxes[-1])))
    d = "M " + " L ".join(f"{px:.1f} {py:.1f}" for px, py in points)
    out = f'<path d="{d}" class="fs-edge" marker-end="url(#fs-arrow)"/>'
    if label:
        (ax, ay), (bx, by) = points[0], points[1]
        out += (f'<text x="{(ax + bx) / 2 + 4:.1f}" y="{(ay + by) / 2 + 4:.1f}" class="fs-edge-label">'
                f"{escape(label)}</text>")
    return out


def _half_h(box: _Box) -> float:
    return {"join": 7.0, "dummy": 0.0, "route": _NODE_H / 2 + 2}.get(box.kind, _NODE_H / 2)


def _back_svg(layout: _Layout, route: str, head: str, lane: float, dx: float) -> str:
    a, b = layout.boxes[route], layout.boxes[head]
    sx, sy = a.x + dx + a.width / 2, a.y
    tx, ty = b.x + dx + b.width / 2, b.y
    d = f"M {sx:.1f} {sy:.1f} C {lane:.1f} {sy:.1f}, {lane:.1f} {ty:.1f}, {tx:.1f} {ty:.1f}"
    return (f'<path d="{d}" class="fs-edge fs-back" marker-end="url(#fs-arrow)"/>'
            f'<text x="{lane - 36:.1f}" y="{(sy + ty) / 2:.1f}" class="fs-edge-label">repeat</text>')


def workflow_svg(workflow: Workflow, *, registry: OperatorRegistry | None = None) -> str:
    """An ``<svg>`` element drawing ``workflow`` top-down (operator boxes coloured by role).

    Hovering a box shows its node id (and prompt, if set) through the SVG ``<title>``.
    """
    layout = _build(to_networkx(workflow), registry or default_registry())
    left = min(b.x - b.width / 2 for b in layout.boxes.values())
    right = max(b.x + b.width / 2 for b in layout.boxes.values())
    dx = _MARGIN - left
    lanes_width = 48 * len(layout.back)
    width = right - left + 2 * _MARGIN + lanes_width
    height = 2 * _MARGIN + (layout.boxes[END].layer + 1) * _PITCH - (_PITCH - _NODE_H)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="fs-workflow" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{escape(workflow.dsl or "empty workflow")}">',
        '<defs><marker id="fs-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#6b7280"/></marker></defs>',
    ]
    parts += [_edge_svg(layout, chain, label, dx) for chain, label in layout.paths]
    base = right + dx + 8
    parts += [_back_svg(layout, route, head, base + 40 * (i + 1), dx)
              for i, (route, head, _) in enumerate(layout.back)]
    order = [START] + [n for n in layout.boxes if n not in (START, END)] + [END]
    parts += [_shape(layout.boxes[n], dx) for n in order]
    parts.append("</svg>")
    return "".join(parts)
