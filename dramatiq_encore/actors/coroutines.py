"""Async tasks: a pass whose task is an ``async def`` awaits its coroutine on an event loop.

The design (``docs/protocol.md``, "Async tasks"). A pass runs in a greenlet of the worker
thread, and its ``wf`` operations ask the driver for what they need by switching greenlets
(:class:`~.replay.Pass`). An async task's pass keeps that shape: its greenlet creates the
coroutine and hands it to the event-loop thread of dramatiq's ``AsyncIO`` middleware, which
runs it as one asyncio task, then waits for it, on the worker thread, like dramatiq's own
``EventLoopThread.run_coroutine`` (polling, so that dramatiq's time limit and shutdown,
raised asynchronously in the worker thread, interrupt the wait: the task is then cancelled).

- ``wf`` operations run where the coroutine runs, on the loop thread, on the pass's
  context; the worker thread only waits meanwhile, so one thread at a time touches it. A
  suspension raises through the coroutine as in a plain function: the asyncio task ends
  with it, the pass ends ``suspended`` exactly as a sync pass does, and nothing is left
  running or un-awaited.
- The rare operation that asks the driver (the lease of a speculative first pass, a data
  value no earlier pass read) cannot switch greenlets from the loop thread: :meth:`_relay`
  hands the question to the waiting greenlet, which asks the driver on the worker thread,
  and blocks the loop thread for that one store round trip (operations are synchronous
  calls, so the coroutine cannot yield to the loop there). A driver that abandons the pass
  makes the operation raise :class:`.Abandoned` in the coroutine, which unwinds it.
- ``wf`` operations are refused (:class:`~dramatiq_encore.errors.MisuseError`) from any
  asyncio task but the pass's own: concurrent tasks (``asyncio.gather``) would interleave
  steps in an order the journal could not replay. ``wf.gather`` runs steps in parallel.
- Running the coroutine on a loop of its own inside the greenlet was the alternative: asyncio
  keeps its running loop per thread, so a greenlet switch to the driver while the loop runs
  would leave the driver (and any pass it runs) inside that loop, and clients bound to
  dramatiq's shared loop could not be used from task code. A task with no ``wf`` operation
  (an activity) is simply awaited on dramatiq's loop, beside its other coroutines.

This module stays pure (no dramatiq import: ``tests/unit/test_engine_purity.py``): the
runtime names the loop with :func:`use_loop`; without one (``encore replay``, the engine's
unit tests, a worker that booted before the first async task was declared) a private
daemon loop thread serves.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .pass_state import Abandoned, Needs

if TYPE_CHECKING:
    from .pass_state import PassState

logger = logging.getLogger(__name__)

#: Seconds between two looks for an interrupt raised in the waiting worker thread (dramatiq: 0.1).
POLL_S = 0.1
#: Seconds an interrupted pass waits for its cancelled coroutine to finish (dramatiq: 1).
CANCEL_WAIT_S = 1.0

LoopProvider = Callable[[], "asyncio.AbstractEventLoop | None"]
_provider: LoopProvider = lambda: None  # noqa: E731
_private: tuple[int, asyncio.AbstractEventLoop] | None = None
_private_lock = threading.Lock()


def use_loop(provider: LoopProvider) -> None:
    """Name the event loop async passes run on (a running loop, or None: the private one)."""
    global _provider
    _provider = provider


def event_loop() -> asyncio.AbstractEventLoop:
    """The loop the next async pass runs on: the runtime's when it runs, else a private one."""
    loop = _provider()
    if loop is not None and loop.is_running():
        return loop
    return _private_loop()


def _private_loop() -> asyncio.AbstractEventLoop:
    global _private
    with _private_lock:
        if _private is None or _private[0] != os.getpid() or not _private[1].is_running():
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            loop.call_soon(ready.set)
            threading.Thread(target=loop.run_forever, name="encore-event-loop", daemon=True).start()
            ready.wait()
            _private = (os.getpid(), loop)
        return _private[1]


class _Reply:
    """The driver's answer to what a coroutine asked, handed back to the loop thread."""

    __slots__ = ("error", "ready", "value")

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class _Finished:
    __slots__ = ("error", "value")

    def __init__(self, value: Any, error: BaseException | None) -> None:
        self.value = value
        self.error = error


class CoroutinePass:
    """One async pass: its coroutine on the loop thread, awaited from the pass's greenlet."""

    def __init__(self, ctx: PassState, loop: asyncio.AbstractEventLoop) -> None:
        self._ctx = ctx
        self._loop = loop
        self._ask = ctx.ask  # the pass's own: a greenlet switch to the driver (None: it stops)
        self._inbox: queue.SimpleQueue[_Finished | tuple[Needs, _Reply]] = queue.SimpleQueue()
        self._task: asyncio.Task[Any] | None = None
        self._closed = False

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """In the pass's greenlet: the coroutine's value, or what it raised (a suspension too)."""
        context = contextvars.copy_context()  # the pass's: its wf context, the current message
        if self._ask is not None:
            self._ctx.ask = self._relay  # before the coroutine starts: it may ask at once
        try:
            self._loop.call_soon_threadsafe(self._spawn, coro, context)
        except RuntimeError:  # the loop closed meanwhile (a shutdown)
            self._ctx.ask = self._ask
            coro.close()
            raise
        try:
            return self._serve()
        finally:
            self._ctx.ask = self._ask
            self._closed = True

    def _spawn(self, coro: Coroutine[Any, Any, Any], context: contextvars.Context) -> None:
        # On the loop thread (the call_soon_threadsafe queue is FIFO: before any _cancel).
        self._task = task = self._loop.create_task(coro, context=context)
        self._ctx.loop_task = task
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            self._inbox.put(_Finished(None, asyncio.CancelledError()))
        elif (error := task.exception()) is not None:  # retrieved: asyncio logs nothing
            self._inbox.put(_Finished(None, error))
        else:
            self._inbox.put(_Finished(task.result(), None))

    def _serve(self) -> Any:
        """Answer what the coroutine asks (through the driver) until it ends."""
        while True:
            item = self._next()
            if isinstance(item, _Finished):
                if item.error is not None:
                    raise item.error
                return item.value
            needs, reply = item
            assert self._ask is not None
            try:
                reply.value = self._ask(needs)
            except BaseException as exc:  # Abandoned, thrown in by the driver: the coroutine unwinds
                reply.error = exc
            finally:
                reply.ready.set()

    def _next(self) -> _Finished | tuple[Needs, _Reply]:
        try:
            item = None
            while item is None:
                item = self._take(POLL_S)
            return item
        except BaseException:  # dramatiq's Interrupt (time limit, shutdown) in this thread
            self._interrupted()
            raise

    # Not a `continue` in an `except queue.Empty:` block: with CPython 3.11, an asynchronous
    # exception raised at that jump was seen to escape the enclosing `except BaseException`.
    def _take(self, timeout: float) -> _Finished | tuple[Needs, _Reply] | None:
        try:
            return self._inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def _interrupted(self) -> None:
        """Cancel the coroutine and give it a moment to unwind; it records nothing more."""
        self._ctx.suspending = True
        self._closed = True
        self._loop.call_soon_threadsafe(self._cancel)
        item = self._take(CANCEL_WAIT_S)
        while isinstance(item, tuple):  # a question asked meanwhile: no answer will come
            item[1].error = Abandoned()
            item[1].ready.set()
            item = self._take(CANCEL_WAIT_S)
        if item is None:
            logger.warning("an interrupted async task did not finish within %s s of its cancellation", CANCEL_WAIT_S)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _relay(self, needs: Needs) -> Any:
        """On the loop thread: ask the driver through the waiting greenlet, and wait."""
        reply = _Reply()
        self._inbox.put((needs, reply))
        while not reply.ready.wait(POLL_S):
            if self._closed:  # the pass ended without answering (an interrupt)
                raise Abandoned()
        if reply.error is not None:
            raise reply.error
        return reply.value


def await_in_pass(ctx: PassState, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run an async task's coroutine for the pass ``ctx`` (called in the pass's greenlet)."""
    return CoroutinePass(ctx, event_loop()).run(coro)
