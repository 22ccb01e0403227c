"""Request batching: concurrent requests for the same model version and signature share one forward pass.

Runs on the server's event loop. Each (model, signature, per-example input shapes) has a *lane*: requests join its
queue; the lane's task waits until ``max_batch_size`` rows are queued or ``batch_timeout_ms`` has passed since the
oldest one arrived, concatenates the queued inputs, runs ``model.predict`` in a worker thread (the event loop keeps
answering meanwhile) and hands each request its own rows. One forward pass per lane runs at a time, so requests that
arrive during a pass form the next batch: under load batches fill without waiting, and a lone request waits at most
``batch_timeout_ms``.

Requests are validated before they join (a malformed one never reaches a batch). Should a batched forward pass
still fail, each of its requests is run alone, so only the request that caused it gets the error.
"""
import asyncio
import collections
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy

__all__ = ["Batcher"]


class _Item:
    __slots__ = ("inputs", "rows", "future", "arrival")

    def __init__(self, inputs, rows, future, arrival):
        self.inputs, self.rows, self.future, self.arrival = inputs, rows, future, arrival


class _Lane:
    __slots__ = ("items", "rows", "full", "task")

    def __init__(self):
        self.items, self.rows, self.full, self.task = collections.deque(), 0, asyncio.Event(), None


class Batcher:
    """Groups concurrent ``predict`` calls into batches.

    Parameters
    ----------
    max_batch_size : int
        The most rows one forward pass takes (a single request with more runs alone, unsplit). 1 turns batching off.
    batch_timeout_ms : float
        How long the oldest queued request may wait for others before its batch runs.
    num_threads : int, optional
        Worker threads for forward passes (default: the number of cores, at most 4).

    Attributes
    ----------
    stats : dict
        ``requests``, ``batches`` (forward passes run) and ``rows`` so far; ``largest_batch`` in rows.
    """

    def __init__(self, max_batch_size=64, batch_timeout_ms=0.0, num_threads=None):
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be a positive integer; received {max_batch_size!r}.")
        if not isinstance(batch_timeout_ms, (int, float)) or not batch_timeout_ms >= 0:
            raise ValueError(f"batch_timeout_ms must be a number >= 0; received {batch_timeout_ms!r}.")
        if num_threads is None:
            num_threads = min(4, os.cpu_count() or 1)
        self.max_batch_size, self.timeout = max_batch_size, batch_timeout_ms / 1000.0
        self._executor = ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="flowlearn-serving")
        self._lanes = {}
        self.stats = {"requests": 0, "batches": 0, "rows": 0, "largest_batch": 0}

    def close(self):
        """Stop the worker threads (after the passes already running)."""
        self._executor.shutdown(wait=True)

    async def call(self, function, *args):
        """Run ``function(*args)`` in a worker thread (for work that is not batched)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def predict_alone(self, model, signature, inputs):
        """``model.predict(inputs, signature=signature)`` in a worker thread, in a pass of its own."""
        self.stats["requests"] += 1
        self.stats["batches"] += 1
        return await self.call(_predict, model, inputs, signature)

    async def predict(self, model, signature, inputs, rows):
        """``model.predict(inputs, signature=signature)``, batched with concurrent calls of the same kind."""
        self.stats["requests"] += 1
        key = (id(model), signature) + tuple((n, a.shape[1:], a.dtype.str) for n, a in inputs.items())
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        future = loop.create_future()
        lane.items.append(_Item(inputs, rows, future, time.monotonic()))
        lane.rows += rows
        if lane.rows >= self.max_batch_size:
            lane.full.set()
        if lane.task is None:
            lane.task = loop.create_task(self._drain(key, lane, model, signature))
        return await future

    async def _drain(self, key, lane, model, signature):
        try:
            await self._drain_items(lane, model, signature)
        except BaseException as error:
            # A bug here (or a shutdown) must not leave requests waiting forever on a lane nobody drains.
            while lane.items:
                _settle(lane.items.popleft().future, error=error if isinstance(error, Exception) else
                        RuntimeError("the server is shutting down"))
            raise
        finally:
            # No await between the last empty check and this: a request arriving later starts a new lane.
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _drain_items(self, lane, model, signature):
        while lane.items:
            if lane.rows < self.max_batch_size and self.timeout > 0:
                delay = lane.items[0].arrival + self.timeout - time.monotonic()
                if delay > 0:
                    lane.full.clear()
                    try:
                        await asyncio.wait_for(lane.full.wait(), delay)
                    except asyncio.TimeoutError:
                        pass
            batch, rows = [], 0
            while lane.items and (not batch or rows + lane.items[0].rows <= self.max_batch_size):
                item = lane.items.popleft()
                batch.append(item)
                rows += item.rows
            lane.rows -= rows
            try:
                await self._run(model, signature, batch, rows)
            except BaseException as error:
                for item in batch:
                    _settle(item.future, error=error if isinstance(error, Exception) else
                            RuntimeError("the server is shutting down"))
                raise

    async def _run(self, model, signature, batch, rows):
        self.stats["batches"] += 1
        self.stats["rows"] += rows
        self.stats["largest_batch"] = max(self.stats["largest_batch"], rows)
        try:
            if len(batch) == 1:
                inputs = batch[0].inputs
            else:
                inputs = {name: numpy.concatenate([item.inputs[name] for item in batch]) for name in batch[0].inputs}
            outputs = await self.call(_predict, model, inputs, signature)
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0].future, error=error)
                return
            outputs = None
        if outputs is not None and all(numpy.ndim(v) >= 1 and numpy.shape(v)[0] == rows for v in outputs.values()):
            start = 0
            for item in batch:
                stop = start + item.rows
                _settle(item.future, {name: value[start:stop] for name, value in outputs.items()})
                start = stop
            return
        # The batch failed, or an output does not follow the batch: answer each request from its own pass.
        for item in batch:
            self.stats["batches"] += 1
            try:
                _settle(item.future, await self.call(_predict, model, item.inputs, signature))
            except Exception as error:
                _settle(item.future, error=error)


def _predict(model, inputs, signature):
    outputs = model.predict(inputs, signature=signature)
    if not isinstance(outputs, dict):
        raise TypeError(f"model.predict returned {type(outputs).__name__}; expected a dict of output arrays.")
    return outputs


def _settle(future, result=None, error=None):
    if future.done():  # the client went away and its request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
