"""Dynamic batching: concurrent requests for the same tail run as one batch.

Callers :meth:`Batcher.submit` their decoded inputs with the function that runs them and get a
``Future``. A free worker takes the tail whose oldest request waited longest, waits at most
``timeout_s`` from that request's arrival for up to ``max_batch`` frames of the same tail,
concatenates them along the batch axis, runs them once and hands each caller its own slice.
While a batch runs, new requests queue, so a busy server batches more without waiting at all.

``instances`` workers (Triton's instance groups) run batches at the same time, each on its own
torch threads (the process's ``torch.set_num_threads`` applies to each calling thread's
parallel regions, and torch releases the GIL while it computes): a node with one torch thread
per instance and one instance per core uses every core. Batches of one tail go to whichever
instance is free. The instances share the tail's weights, which nothing writes while serving.

A lone caller does not pay for batching: a request that finds the node idle (nothing running,
queued or being decoded) is run by its own caller's thread as soon as it waits for its result,
without waiting out the window or handing over to a worker and back. With ``timeout_s`` 0 a
request that finds an instance free and nothing queued runs in :meth:`Batcher.submit` itself.

The queue holds at most ``max_queue_frames`` frames. A caller that has yet to decode its
inputs first :meth:`Batcher.reserve` s room for the frames it declares, so a request the queue
cannot take is refused before its bytes are decompressed, and frames being decoded count
against the limit as much as frames already queued.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

RunFn = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]


@dataclass(frozen=True)
class Stacking:
    """Where a run's tensors hold their frames (a tail's manifest says): the dim of each input
    and each output frames are concatenated along, and how many entries one frame has there
    (k where windows are folded into the batch, Swin's ``k * batch``)."""

    input_dims: tuple[int, ...]
    output_dims: tuple[int, ...]
    output_per_frame: tuple[int, ...]
    input_per_frame: tuple[int, ...] = ()  # default: 1 each

    def frames(self, inputs: Sequence[np.ndarray]) -> int:
        """How many frames ``inputs`` hold (read from the first one)."""
        if not inputs or not inputs[0].ndim:
            return 1
        k = self.input_per_frame[0] if self.input_per_frame else 1
        return int(inputs[0].shape[self.input_dims[0]]) // max(k, 1)


def _take_frames(array: np.ndarray, dim: int, start: int, stop: int) -> np.ndarray:
    """``array[start:stop]`` along ``dim`` (a view)."""
    index = [slice(None)] * array.ndim
    index[dim] = slice(start, stop)
    return array[tuple(index)]


class QueueFull(Exception):
    """The queue holds too many frames to take a request now: the caller should back off."""


class BatchTooLarge(Exception):
    """A request of more frames than the whole queue holds: it will never fit, split it."""


class BatcherClosed(Exception):
    """The batcher is shutting down and takes no new work."""


@dataclass(frozen=True)
class BatchResult:
    """One caller's outputs plus how its request was served."""

    outputs: list[np.ndarray]
    queue_s: float  # from submit to the start of its batch
    compute_s: float  # the whole batch's run
    batch_frames: int  # frames in the batch it ran in


class Reservation:
    """Room held in the queue for a request's frames; pass it to ``submit`` or ``release`` it.

    As a context manager it releases the room on exit unless ``submit`` took it.
    """

    def __init__(self, batcher: Batcher, frames: int) -> None:
        self.frames = frames
        self._batcher: Batcher | None = batcher

    def release(self) -> None:
        """Give the room back (once; after ``submit`` took it, nothing to do)."""
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher._unreserve(self.frames)

    def _take(self, batcher: Batcher) -> None:
        if self._batcher is not batcher:
            raise ValueError("this reservation was released, used, or made by another batcher")
        self._batcher = None

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class _Pending:
    inputs: Sequence[np.ndarray]
    frames: int
    run: RunFn
    max_batch: int
    enqueued_s: float
    future: Future[BatchResult] = field(default_factory=Future)
    stacking: Stacking | None = None  # None: every tensor holds its frames in dim 0


class _ClaimingFuture(Future[BatchResult]):
    """The future of a lone request: waiting for it first tries to run it in the waiting thread
    (``claim``); a worker takes it instead if nobody waits before the window ends."""

    def __init__(self) -> None:
        super().__init__()
        self.claim: Callable[[], None] | None = None

    def result(self, timeout: float | None = None) -> BatchResult:
        claim, self.claim = self.claim, None
        if claim is not None:
            claim()
        return super().result(timeout)


class Batcher:
    """Groups concurrent requests per key (one tail) into batches run by ``instances`` workers.

    ``on_batch(key, frames, compute_s, queue_s, instance)`` is told of every batch run, with
    the index (0 .. instances-1) of the instance that ran it.
    """

    def __init__(
        self,
        *,
        max_batch: int = 16,
        timeout_s: float = 0.002,
        max_queue_frames: int = 1024,
        instances: int = 1,
        on_batch: Callable[[Hashable, int, float, float, int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if timeout_s < 0:
            raise ValueError(f"batch timeout must be >= 0, got {timeout_s}")
        if max_queue_frames < 1:
            raise ValueError(f"max_queue_frames must be >= 1, got {max_queue_frames}")
        if instances < 1:
            raise ValueError(f"instances must be >= 1, got {instances}")
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.max_queue_frames = max_queue_frames
        self._on_batch = on_batch
        self._queues: dict[Hashable, collections.deque[_Pending]] = {}
        self._queued_frames = 0
        self._reserved_frames = 0  # admitted by reserve(), still being decoded
        self._cond = threading.Condition()
        self._closed = False
        self.instances = instances
        # The instances not running a batch (on a worker or inline); lowest index first.
        self._free: list[int] = list(range(instances))
        self._workers = [
            threading.Thread(target=self._loop, name=f"batcher-{i}", daemon=True)
            for i in range(instances)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def busy_instances(self) -> int:
        with self._cond:
            return self.instances - len(self._free)

    @property
    def queued_frames(self) -> int:
        with self._cond:
            return self._queued_frames

    def reserve(self, frames: int) -> Reservation:
        """Hold room for a request of ``frames`` frames before its inputs are decoded.

        Raises :class:`BatchTooLarge` when ``frames`` exceeds ``max_queue_frames``,
        :class:`QueueFull` when the frames queued (or reserved) leave no room now, and
        :class:`BatcherClosed` once closing.
        """
        with self._cond:
            self._admit(frames)
            self._reserved_frames += frames
        return Reservation(self, frames)

    def _admit(self, frames: int) -> None:
        """Refuse ``frames`` more unless the queue has room for them (caller holds the lock)."""
        if self._closed:
            raise BatcherClosed("the server is shutting down")
        if frames > self.max_queue_frames:
            raise BatchTooLarge(
                f"batch of {frames} frames exceeds the queue limit of "
                f"{self.max_queue_frames} frames"
            )
        held = self._queued_frames + self._reserved_frames
        if held + frames > self.max_queue_frames:
            # held >= 1 here, since frames alone fit: "busy" means the queue holds frames.
            raise QueueFull(f"{held} frames are queued (limit {self.max_queue_frames})")

    def _unreserve(self, frames: int) -> None:
        with self._cond:
            self._reserved_frames -= frames

    def submit(
        self,
        key: Hashable,
        inputs: Sequence[np.ndarray],
        run: RunFn,
        *,
        max_batch: int | None = None,
        reservation: Reservation | None = None,
        stacking: Stacking | None = None,
    ) -> Future[BatchResult]:
        """Queue one request (every input with the same batch) for ``run``.

        ``max_batch`` lowers the batch limit for this key (a tail exported for batch 1 only).
        With a ``reservation`` for the same frames the room is already held; without one the
        queue limit is checked here (:class:`BatchTooLarge`, :class:`QueueFull`). ``stacking``
        says where the inputs and outputs hold their frames (default: dim 0 of each).
        """
        if stacking is not None:
            frames = stacking.frames(inputs)
        else:
            frames = int(inputs[0].shape[0]) if inputs and inputs[0].ndim else 1
        if reservation is not None and reservation.frames != frames:
            raise ValueError(f"a reservation of {reservation.frames} frames for {frames}")
        pending = _Pending(
            inputs,
            frames,
            run,
            min(self.max_batch, max_batch or self.max_batch),
            time.monotonic(),
            stacking=stacking,
        )
        with self._cond:
            if reservation is None:
                self._admit(frames)
            elif self._closed:
                raise BatcherClosed("the server is shutting down")
            else:
                reservation._take(self)
                self._reserved_frames -= frames
            # Nothing to wait for and nobody to batch with: run in the caller's thread,
            # which saves the two thread hand-offs a lone request would otherwise pay.
            slot = None
            if self.timeout_s == 0 and self._free and not self._queued_frames:
                slot = self._free.pop(0)
            else:
                idle = (
                    len(self._free) == self.instances
                    and not self._queued_frames
                    and not self._reserved_frames
                )
                if idle:  # nobody to batch with now: its caller may run it at once
                    claiming = _ClaimingFuture()
                    claiming.claim = lambda: self._claim(key, pending)
                    pending.future = claiming
                self._queues.setdefault(key, collections.deque()).append(pending)
                self._queued_frames += frames
                self._cond.notify_all()
        if slot is not None:
            self._run_in(slot, key, [pending])
        return pending.future

    def _claim(self, key: Hashable, pending: _Pending) -> None:
        """Run ``pending`` (and what queued behind it) in this thread if an instance is free and
        no worker took it yet; otherwise leave it to the workers."""
        with self._cond:
            queue = self._queues.get(key)
            if not self._free or not queue or queue[0] is not pending:
                return
            batch = self._pop_batch(key, queue)
            slot = self._free.pop(0)
        self._run_in(slot, key, batch)

    def _run_in(self, slot: int, key: Hashable, batch: list[_Pending]) -> None:
        """Run a batch on instance ``slot`` (already taken), then give the instance back."""
        try:
            self._run(key, batch, slot)
        finally:
            with self._cond:
                self._free.append(slot)
                self._free.sort()
                self._cond.notify_all()

    def close(self, *, drain: bool = True, timeout_s: float | None = None) -> None:
        """Take no new work; finish what is queued (``drain``) or fail it, then stop the worker."""
        with self._cond:
            self._closed = True
            if not drain:
                for queue in self._queues.values():
                    for pending in queue:
                        pending.future.set_exception(BatcherClosed("the server shut down"))
                self._queues.clear()
                self._queued_frames = 0
            self._cond.notify_all()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for worker in self._workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ worker

    def _take(self) -> tuple[int, Hashable, list[_Pending]] | None:
        """Wait for a free instance and a due batch, remove the batch from its queue and take
        the instance; None once closed and empty."""
        with self._cond:
            while True:
                while (not self._queued_frames or not self._free) and not self._closed:
                    self._cond.wait()
                while not self._free:  # closing: let the running batches finish first
                    self._cond.wait()
                if not self._queued_frames:
                    return None
                key, queue = min(
                    ((k, q) for k, q in self._queues.items() if q),
                    key=lambda item: item[1][0].enqueued_s,
                )
                head = queue[0]
                limit = head.max_batch
                due = head.enqueued_s + self.timeout_s
                while not self._closed and queue and queue[0] is head:
                    frames = sum(p.frames for p in queue)
                    remaining = due - time.monotonic()
                    if frames >= limit or remaining <= 0:
                        break
                    self._cond.wait(remaining)
                taken = self._queues.get(key) is not queue or not queue or queue[0] is not head
                if taken or not self._free:
                    # Another instance or a lone caller took the batch, or close(drain=False)
                    # failed it, while this one waited: look again (a new head has its own due).
                    continue
                return self._free.pop(0), key, self._pop_batch(key, queue)

    def _pop_batch(self, key: Hashable, queue: collections.deque[_Pending]) -> list[_Pending]:
        """The batch at the head of ``key``'s queue, removed from it (caller holds the lock)."""
        limit = queue[0].max_batch
        batch = [queue.popleft()]
        frames = batch[0].frames
        while queue and frames + queue[0].frames <= limit:
            frames += queue[0].frames
            batch.append(queue.popleft())
        if not queue:
            del self._queues[key]
        self._queued_frames -= frames
        return batch

    def _loop(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            self._run_in(*taken)

    def _run(self, key: Hashable, batch: list[_Pending], instance: int = 0) -> None:
        """Run one batch on ``instance`` and settle its callers' futures."""
        started = time.monotonic()
        frames = sum(p.frames for p in batch)
        try:
            stacking = batch[0].stacking
            if len(batch) == 1:
                outputs = list(batch[0].run(batch[0].inputs))
            else:
                joined = [
                    np.concatenate(
                        [p.inputs[i] for p in batch], axis=stacking.input_dims[i] if stacking else 0
                    )
                    for i in range(len(batch[0].inputs))
                ]
                outputs = list(batch[0].run(joined))
        except Exception as exc:
            for pending in batch:
                pending.future.set_exception(exc)
            return
        compute_s = time.monotonic() - started
        if self._on_batch is not None:
            self._on_batch(key, frames, compute_s, started - batch[0].enqueued_s, instance)
        offset = 0
        for pending in batch:
            if len(batch) == 1:  # its own outputs, whatever dim holds the batch
                part = outputs
            elif stacking is None:
                part = [o[offset : offset + pending.frames] for o in outputs]
            else:
                part = [
                    _take_frames(o, dim, offset * k, (offset + pending.frames) * k)
                    for o, dim, k in zip(
                        outputs, stacking.output_dims, stacking.output_per_frame, strict=True
                    )
                ]
            offset += pending.frames
            pending.future.set_result(
                BatchResult(part, started - pending.enqueued_s, compute_s, frames)
            )
