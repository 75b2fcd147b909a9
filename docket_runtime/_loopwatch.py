"""A warning for ``async def`` steps that block the event loop (``Graph(loop_block_warning=)``).

An async step that calls blocking code (``time.sleep``, a synchronous HTTP
client, heavy CPU work) holds the event loop: every other step and execution
on it waits. Twenty such steps of 50 ms run one after another (1 s) where
``blocking: true`` would have overlapped them in threads (0.26 s).

How it is measured. The time between a step's coroutine being resumed and
suspending again is not observable for free: timing each ``send()`` of every
step coroutine in a wrapper costs a Python-level generator and two clock reads
per resumption, on every step, even the ones that never block. Measured on the
development VM, a trivial step awaited directly costs 0.13 µs and through such
a wrapper 1.0 µs: some 3.6 µs more per execution of the 4-step bench graphs,
10% of the diamond's runtime overhead and 35% of the chain's. So the measure
is taken from outside:

- a *heartbeat* on the loop: a callback that reschedules itself every
  ``threshold / 10`` (10 ms at a 100 ms threshold) while executions of a watched graph
  run, and stops one beat after the last one ends. While a beat is overdue,
  the loop has not finished the iteration it was in when the beat fell due:
  it is running one callback after another without going back to its
  selector, and a task is stepped at most once per iteration;
- a *watchdog thread* (one per process, started when a watched graph is
  bound, asleep while no loop beats). While a loop beats on time it looks at
  it a quarter of the threshold after its next beat falls due (every 30 ms or
  so); while a beat is overdue, every beat interval, sampling the loop
  thread's stack (``sys._current_frames()``) for the frame of a step method.
  The same frame seen in samples spanning the threshold, with the beat
  overdue all along, is a step that has held the loop that long without
  yielding: never less, so no false alarm. A hold is caught once it lasts
  about one and a half thresholds (150 ms at a 100 ms threshold: 20 of 20 holds of
  150 ms were caught, 1 of 20 of 130 ms). The thread logs it at once (logger
  ``docket.runner``), while the step still blocks (so a step that never
  returns is reported too), once per step per graph.

Each step is judged on its own hold: twenty steps of 50 ms stall the loop for
a second, but at a threshold of 100 ms none is reported, since each
one's frame leaves the stack within a few samples (a threshold of 0.03
reports them). A step that yields now and then lets the beat run: not reported.

The cost falls where nothing runs: a graph bound with ``loop_block_warning=None``
(the default) has no watch at all. Otherwise each execution pays its entry and exit in the
watch (0.15 µs against 0.02 µs for the same code without them, in CPU time),
each loop with executions a callback every 10 ms, and the watchdog takes the
GIL some 30 times a second, for a few microseconds. That last part is what a
busy machine notices: on the 2-vCPU development VM, under a load of 3 to 5,
waking every 10 ms slowed bench/diamond.py's diamond by a third; at 30 ms the
graph's executions are 1 to 3 µs slower, and a step pays nothing per call.
Measured alternately on the same machine, that still raises the diamond's
CPU time from about 1.02x to 1.06x the same steps under ``asyncio.gather``
(docs/runtime.md): hence off by default, for development and tests. Blocking code that is not a step
(the caller's own, a store) is not reported here.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Watch"]

_thread_id = threading.get_ident

_log = logging.getLogger("docket.runner")

_MIN_TICK = 0.002
"""Shortest beat interval, whatever the threshold."""

_TICKS = 10
"""Beats per threshold: a hold is caught within about two beat intervals past it."""

_LOOK_AFTER = 0.25
"""While a loop beats on time, the watchdog looks at it this fraction of the threshold
after its next beat falls due."""


class Watch:
    """The blocked-loop check of one bound graph: its threshold and the steps it warned of."""

    __slots__ = ("__weakref__", "_state", "graph", "running", "threshold", "warned")

    def __init__(self, graph: str, threshold: float, steps: Iterable[tuple[str, object]]) -> None:
        """``steps`` are the ``(name, method)`` of the graph's ``async def`` steps."""
        self.graph = graph
        self.threshold = threshold
        self.warned: set[str] = set()
        self.running = 0  # executions in progress: only a running graph is warned of
        self._state: _Loop | None = None  # the loop it last ran on
        ref = weakref.ref(self)
        with _lock:
            for name, method in steps:
                code = _code_of(method)
                if code is not None:
                    entries = _codes.setdefault(code, [])
                    entries[:] = [e for e in entries if e[0]() is not None]
                    entries.append((ref, name))
        # Started now, asleep until a loop beats: not in the middle of the first execution.
        _start_watchdog()

    def enter(self) -> None:
        """Count an execution starting on the running loop, whose beat starts if it is off;
        call :meth:`leave` when it ends."""
        state = self._state
        # The thread, not the loop (asyncio's get_running_loop() calls getpid(): a syscall):
        # a loop closed and replaced in this thread stops beating within a beat interval.
        if state is None or not state.beating or state.thread != _thread_id():
            self._attach()
        self.running += 1

    def leave(self) -> None:
        """Count an execution ended."""
        self.running -= 1

    def _attach(self) -> None:
        state = self._state = _state_of(asyncio.get_running_loop(), self.threshold)
        state.watches.add(self)
        if not state.beating:
            state.start()


class _Loop:
    """The heartbeat of one event loop, shared by every watched graph running on it."""

    __slots__ = (
        "beating",
        "due",
        "first",
        "first_at",
        "idle",
        "loop",
        "thread",
        "threshold",
        "tick",
        "watches",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float) -> None:
        self.loop = loop
        self.thread = threading.get_ident()
        self.threshold = threshold
        self.tick = max(_MIN_TICK, threshold / _TICKS)
        self.watches: weakref.WeakSet[Watch] = weakref.WeakSet()
        self.beating = False
        self.idle = False
        self.due = 0.0
        self.first: types.FrameType | None = None  # the step frame seen since first_at
        self.first_at = 0.0

    def start(self) -> None:
        self.beating = True
        self.idle = False
        self.due = time.monotonic() + self.tick
        self.loop.call_later(self.tick, self.beat)
        _wake_watchdog()

    def beat(self) -> None:
        if any(watch.running for watch in self.watches):
            self.idle = False
        elif not self.idle:
            self.idle = True  # one more beat, for the next execution of a run of them
        else:
            self.beating = False
            return
        self.due = time.monotonic() + self.tick
        self.loop.call_later(self.tick, self.beat)

    def next_look(self, now: float) -> float:
        """When the watchdog should look at this loop next."""
        if now < self.due:
            return self.due + self.threshold * _LOOK_AFTER
        return now + self.tick

    def check(self, now: float, frames: Callable[[], dict[int, types.FrameType]]) -> None:
        """On the watchdog thread: while the beat is overdue, follow the step on the stack."""
        if not self.beating or now < self.due:
            self.first = None  # the loop goes round: nothing holds it
            return
        frame = _step_frame(frames().get(self.thread))
        if frame is None or frame is not self.first:
            self.first, self.first_at = frame, now
            return
        # The same step since first_at, in one iteration of the loop: it never yielded.
        _report(frame.f_code, now - self.first_at)


# Shared state: the loops and step code objects watched, and the watchdog thread --------------

_lock = threading.Lock()
_loops: dict[asyncio.AbstractEventLoop, _Loop] = {}
_codes: dict[types.CodeType, list[tuple[weakref.ref[Watch], str]]] = {}
_wake = threading.Event()
_thread: threading.Thread | None = None


def _state_of(loop: asyncio.AbstractEventLoop, threshold: float) -> _Loop:
    with _lock:
        state = _loops.get(loop)
        if state is None:
            for closed in [other for other in _loops if other.is_closed()]:
                del _loops[closed]
            state = _loops[loop] = _Loop(loop, threshold)
        elif threshold < state.threshold:
            state.threshold = threshold
            state.tick = max(_MIN_TICK, threshold / _TICKS)
        return state


def _start_watchdog() -> None:
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_watchdog, name="docket-loopwatch", daemon=True)
            _thread.start()


def _wake_watchdog() -> None:
    _start_watchdog()
    _wake.set()


def _watchdog() -> None:
    while True:
        _wake.clear()
        with _lock:
            beating = [state for state in _loops.values() if state.beating]
        if not beating:
            _wake.wait()
            continue
        # Each wake takes the GIL from the loop: as seldom as detection allows (see the
        # module docstring).
        now = time.monotonic()
        time.sleep(max(0.0, min(state.next_look(now) for state in beating) - now))
        now = time.monotonic()
        frames = functools.cache(sys._current_frames)  # one snapshot, only if needed
        for state in beating:
            if state.loop.is_closed():
                state.beating = False
                continue
            state.check(now, frames)


def _reset_after_fork() -> None:
    global _lock, _wake, _thread
    _lock, _wake, _thread = threading.Lock(), threading.Event(), None
    _loops.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _code_of(method: object) -> types.CodeType | None:
    function: Any = method
    while isinstance(function, functools.partial):
        function = function.func
    function = getattr(function, "__func__", function)
    code = getattr(function, "__code__", None)
    return code if isinstance(code, types.CodeType) else None


def _step_frame(frame: types.FrameType | None) -> types.FrameType | None:
    """The innermost frame on the stack that runs a watched step method."""
    while frame is not None:
        if frame.f_code in _codes:
            return frame
        frame = frame.f_back
    return None


def _report(code: types.CodeType, held: float) -> None:
    """Warn of the step running ``code``, which has held the loop for ``held`` seconds so far,
    for each running graph whose threshold that passes, once per step per graph (graphs
    bound to one implementation share its code)."""
    for ref, step in list(_codes.get(code, ())):
        watch = ref()
        if watch is None or not watch.running or held < watch.threshold or step in watch.warned:
            continue
        watch.warned.add(step)
        _log.warning(
            "step %r of %s has held the event loop for over %gs without yielding: every "
            "other step and execution on the loop waits meanwhile. If it calls blocking code, "
            "make it a plain def and mark it blocking: true in its (docket.step) options, so "
            "that it runs in a thread (warned once per step; Graph(loop_block_warning=None) "
            "turns this off)",
            step,
            watch.graph,
            watch.threshold,
        )
