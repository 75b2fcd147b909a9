"""The dependency graph of a plan: every derivation over the steps' ``needs``, in one place.

A graph is a mapping from each step to the steps whose outputs it takes, in
declaration order (``plan.Step.needs``). Its nodes are step names in the plan
and the generator, positions in the runtime's tables: the functions below only
hash and compare them. Needs that are not in the subset of steps a function is
given (``order``) are taken as satisfied: their values are there already.

The generator calls these functions to write the plan (each step's needs, its
targets and levels, batch stages, cycle errors); the runtime calls them when a
graph is first bound, to build its tables, and on resume, to prune a schedule.
None of them runs per execution otherwise.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from .plan import Step

K = TypeVar("K", bound=Hashable)

Needs: TypeAlias = Mapping[K, Sequence[K]]
"""Step -> the steps it needs, keyed in declaration order."""


def step_needs(steps: Sequence[Step]) -> dict[str, tuple[str, ...]]:
    """Each step's needs derived from its inputs: the steps producing them, in input order,
    without repeats (the first step producing a type, when several do).

    What the generator writes into ``Step.needs``; the runtime checks a plan against it.
    """
    producers: dict[str, str] = {}
    for step in steps:
        producers.setdefault(step.output, step.name)
    needs: dict[str, tuple[str, ...]] = {}
    for step in steps:
        names: list[str] = []
        for item in step.inputs:
            producer = producers.get(item.type)
            if producer is not None and producer not in names:
                names.append(producer)
        needs[step.name] = tuple(names)
    return needs


def needs_of(steps: Iterable[Step]) -> dict[str, tuple[str, ...]]:
    """The graph of plan steps as written in the plan: name -> ``needs``."""
    return {step.name: step.needs for step in steps}


def reverse(needs: Needs[K]) -> dict[K, list[K]]:
    """Step -> the steps that need it (its dependents), both in the order of ``needs``."""
    users: dict[K, list[K]] = {key: [] for key in needs}
    for key, deps in needs.items():
        for dep in dict.fromkeys(deps):
            if dep in users:
                users[dep].append(key)
    return users


def upstream(needs: Needs[K], start: Iterable[K]) -> list[K]:
    """``start`` and every step it needs, directly or not, in the order of ``needs``."""
    found = _closure(needs, start)
    return [key for key in needs if key in found]


def downstream(needs: Needs[K], start: Iterable[K]) -> list[K]:
    """``start`` and every step that needs it, directly or not, in the order of ``needs``."""
    found = _closure(reverse(needs), start)
    return [key for key in needs if key in found]


def topological_order(needs: Needs[K]) -> list[K]:
    """Every step after the steps it needs; ties keep the order of ``needs``, so the result is
    stable. Raises ValueError when the steps form a cycle (see :func:`cycles`)."""
    rank = {key: number for number, key in enumerate(needs)}
    remaining = {key: len({dep for dep in deps if dep in rank}) for key, deps in needs.items()}
    users = reverse(needs)
    ready = [rank[key] for key, count in remaining.items() if count == 0]
    keys = list(needs)
    order: list[K] = []
    while ready:
        key = keys[heapq.heappop(ready)]
        order.append(key)
        for user in users[key]:
            remaining[user] -= 1
            if remaining[user] == 0:
                heapq.heappush(ready, rank[user])
    if len(order) != len(keys):
        raise ValueError("the steps form a cycle")
    return order


def target_steps(needs: Needs[K], target: K) -> tuple[K, ...]:
    """The minimal set of steps that produces ``target``'s output, itself included, in a
    topological order."""
    needed = set(_closure(needs, (target,)))
    return tuple(key for key in topological_order(needs) if key in needed)


def levels(needs: Needs[K], order: Sequence[K]) -> tuple[tuple[K, ...], ...]:
    """``order`` (a topological order) grouped so that each group needs only earlier ones:
    a step's level is one more than the deepest level among its needs."""
    return _layers(needs, order, lambda _: 1)


def stages(needs: Needs[K], order: Sequence[K], starts: Collection[K]) -> tuple[tuple[K, ...], ...]:
    """``order`` (a topological order) cut into stages: each step of ``starts`` begins a stage
    after every stage that its needs are in. A step's stage is the number of ``starts`` on the
    longest path to it; a stage has only the steps of ``order`` in it, in order."""
    return _layers(needs, order, lambda key: 1 if key in starts else 0)


@dataclass(frozen=True, slots=True)
class Schedule:
    """How to run a topological order of steps, by position in it.

    ``dep_counts[pos]`` is how many steps of the order it waits for;
    ``dependents[pos]`` the positions that wait for it, in order; ``roots`` the
    positions that wait for nothing; ``chain`` is true when each step needs the one
    before it, so the steps run one after another.
    """

    dep_counts: tuple[int, ...]
    dependents: tuple[tuple[int, ...], ...]
    roots: tuple[int, ...]
    chain: bool


def schedule(needs: Needs[K], order: Sequence[K]) -> Schedule:
    """The schedule of ``order`` (a topological order of steps) on its own."""
    position = {key: pos for pos, key in enumerate(order)}
    deps = {
        pos: sorted({position[dep] for dep in needs[key] if dep in position})
        for pos, key in enumerate(order)
    }
    return Schedule(
        dep_counts=tuple(len(d) for d in deps.values()),
        dependents=tuple(tuple(users) for users in reverse(deps).values()),
        roots=tuple(pos for pos, d in deps.items() if not d),
        chain=all(pos - 1 in deps[pos] for pos in range(1, len(order))),
    )


def still_needed(needs: Needs[K], order: Sequence[K], known: Collection[K]) -> list[K]:
    """The steps of ``order`` that still have to run once the steps ``known`` have values.

    Resolution starts at the sinks of ``order`` (the steps that no step of it needs:
    the target, or every step a batch stage keeps for later) and stops at known
    results: a step runs only if something that still has to run needs it.
    """
    members = set(order)
    sub = {key: [dep for dep in needs[key] if dep in members] for key in order}
    sinks = [key for key, users in reverse(sub).items() if not users]
    found = _closure(sub, (key for key in sinks if key not in known), stop=known)
    return [key for key in order if key in found]


def cycles(needs: Needs[K]) -> list[list[K]]:
    """One cycle per strongly connected group of steps that has one, as a path in needs-order
    from the group's first step (in the order of ``needs``) back to it."""
    rank = {key: number for number, key in enumerate(needs)}
    found = []
    for component in _strongly_connected(needs):
        first = min(component, key=rank.__getitem__)
        if len(component) == 1 and first not in needs[first]:
            continue
        found.append(_cycle_path(first, set(component), needs))
    return found


def _closure(edges: Needs[K], start: Iterable[K], stop: Collection[K] = ()) -> set[K]:
    """``start`` and every node reachable from it along ``edges``, not walking into ``stop``."""
    seen = set(start)
    stack = list(seen)
    while stack:
        for nxt in edges[stack.pop()]:
            if nxt not in seen and nxt not in stop:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _layers(
    needs: Needs[K], order: Sequence[K], weight: Callable[[K], int]
) -> tuple[tuple[K, ...], ...]:
    """``order`` grouped by the heaviest path to each step (the sum of ``weight`` along it)."""
    depth: dict[K, int] = {}
    for key in order:
        below = max((depth[dep] for dep in needs[key] if dep in depth), default=0)
        depth[key] = below + weight(key)
    return tuple(
        tuple(key for key in order if depth[key] == d) for d in sorted(set(depth.values()))
    )


def _strongly_connected(needs: Needs[K]) -> list[list[K]]:
    """Tarjan's algorithm, iterative, in the order of ``needs`` for stable output."""
    index_of: dict[K, int] = {}
    low: dict[K, int] = {}
    stack: list[K] = []
    on_stack: set[K] = set()
    components: list[list[K]] = []
    for root in needs:
        if root in index_of:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index_of[node] = low[node] = len(index_of)
                stack.append(node)
                on_stack.add(node)
            children = needs[node]
            if child < len(children):
                work.append((node, child + 1))
                nxt = children[child]
                if nxt not in index_of:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index_of[nxt])
                continue
            if low[node] == index_of[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _cycle_path(start: K, members: set[K], needs: Needs[K]) -> list[K]:
    """A cycle through ``start`` inside one strongly connected group, in needs-order."""
    previous: dict[K, K] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for dep in needs[node]:
                if dep not in members:
                    continue
                if dep == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if dep not in previous:
                    previous[dep] = node
                    nxt_frontier.append(dep)
        frontier = nxt_frontier
    return [start, start]
