"""The worker's heartbeat, beaten from a thread on a connection of its own.

Procrastinate beats a worker's heartbeat from a task of the event loop; one
failed write ends that task for good (3.10 stops watching its side tasks once
its periodic-task loop returns, which it does at once with no cron), and a
step that holds the loop delays the beat. Either makes a live worker look
dead, and the stalled-jobs sweep then hands its running jobs to another
worker: the same execution runs twice at once.

:class:`Heartbeat` beats instead, from a daemon thread, through
``procrastinate_update_heartbeat_v1``: a failed write is retried at the next
beat on a new connection, and a busy loop does not stop it. The thread also
looks at the loop: when the loop has not run a callback for the stalled
timeout, it logs a warning once (a step blocks it).

A worker that cannot beat must not keep running what others will take over.
When the worker's row is gone (pruned by another worker) the thread calls
``on_lost`` in the loop at once; :meth:`Heartbeat.watch`, a task of the
loop, calls it when no beat got through for ``stalled_timeout - 2 *
interval`` seconds, however long a beat hangs (a network gone silent).
``on_lost`` stops the worker's jobs before any other worker may see them
stalled: a second run never starts a step while the first one still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

_log = logging.getLogger("docket.durable")

_BEAT = (
    "SELECT procrastinate_update_heartbeat_v1(%s),"
    " EXISTS (SELECT FROM procrastinate_workers WHERE id = %s)"
)


class Heartbeat:
    """Beats worker ``worker_id``'s heartbeat every ``interval`` seconds from a thread.

    ``conninfo`` and ``connect_args`` open its connection (the queue's
    database). ``on_lost(reason)`` is called once, in ``loop``, when the
    worker must stop its jobs (see the module docstring); the thread then ends.
    """

    def __init__(
        self,
        conninfo: str,
        connect_args: Mapping[str, Any],
        *,
        worker_id: int,
        interval: float,
        stalled_timeout: float,
        loop: asyncio.AbstractEventLoop,
        on_lost: Callable[[str], None],
    ) -> None:
        self.conninfo = conninfo
        self.connect_args = dict(connect_args)
        self.worker_id = worker_id
        self.interval = interval
        self.stalled_timeout = stalled_timeout
        self.lost_after = stalled_timeout - 2 * interval
        self.loop = loop
        self.on_lost = on_lost
        self.beats = 0
        self.failures = 0
        self._last_ok = time.monotonic()
        self._lost = False
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._ping_since: float | None = None
        self._loop_warned = False
        self._thread = threading.Thread(
            target=self._run, name=f"docket heartbeat {worker_id}", daemon=True
        )

    def start(self) -> None:
        """Start beating (the worker registered itself just now)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating; the thread ends after the beat in progress, if any."""
        self._stop.set()

    async def watch(self) -> None:
        """Call ``on_lost`` once no beat got through for ``lost_after`` seconds; a loop task."""
        while not self._lost:
            await asyncio.sleep(self.interval / 2)
            silent = time.monotonic() - self._last_ok
            if silent > self.lost_after and not self._stop.is_set():
                self._lose(f"no heartbeat written for {silent:.1f}s")

    def _run(self) -> None:
        failing = False
        try:
            while not self._stop.wait(self.interval) and not self._lost:
                self._watch_loop()
                try:
                    alive = self._beat()
                except psycopg.Error as err:
                    self.failures += 1
                    if self._conn is not None and self._conn.broken:
                        self._drop()
                    if not failing:
                        _log.warning(
                            "worker %s: heartbeat not written (%s); trying again every %gs",
                            self.worker_id,
                            err,
                            self.interval,
                        )
                    failing = True
                    continue
                if not alive:
                    self._lose("its row in procrastinate_workers is gone (pruned as stalled)")
                    return
                if failing:
                    _log.warning("worker %s: heartbeat written again", self.worker_id)
                failing = False
                self.beats += 1
                self._last_ok = time.monotonic()
        finally:
            self._drop()

    def _beat(self) -> bool:
        if self._conn is None:
            timeout = max(1.0, self.interval)
            self._conn = psycopg.connect(
                self.conninfo,
                **{
                    **self.connect_args,
                    "autocommit": True,
                    # libpq waits at least 2 s to connect, whatever is asked.
                    "connect_timeout": max(2, math.ceil(timeout)),
                    "tcp_user_timeout": int(timeout * 1000),
                },
            )
            self._conn.execute(
                "SELECT set_config('statement_timeout', %s, false)", (f"{int(timeout * 1000)}",)
            )
        row = self._conn.execute(_BEAT, (self.worker_id, self.worker_id)).fetchone()
        return row is not None and bool(row[1])

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _lose(self, reason: str) -> None:
        if self._lost:
            return
        self._lost = True
        # A closed loop (RuntimeError): the worker is gone already.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.on_lost, reason)

    def _watch_loop(self) -> None:
        """Warn once when the event loop has not run a callback for the stalled timeout."""
        now = time.monotonic()
        if self._ping_since is None:
            self._ping_since = now
            try:
                self.loop.call_soon_threadsafe(self._pong)
            except RuntimeError:
                self._stop.set()
            return
        blocked = now - self._ping_since
        if blocked > self.stalled_timeout and not self._loop_warned:
            self._loop_warned = True
            _log.warning(
                "worker %s: its event loop has not run for %.1fs (a step blocks it: run "
                "blocking code in a thread); the heartbeat goes on from a thread, so its "
                "jobs are not taken over, but nothing else of the worker moves",
                self.worker_id,
                blocked,
            )

    def _pong(self) -> None:
        self._ping_since = None
        self._loop_warned = False
