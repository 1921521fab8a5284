"""Running a SweepPlan: serially in this process, or as Dask tasks on a LocalCluster or any cluster's Client.

Both run the same tasks (simdq.sweep.tasks) and file every finished point in the store at once, so an
interrupted sweep resumes where it stopped and a repeated one is read back whole. On Dask, each model x batch
x runtime is traced once (or read from the store), scattered, and every scheme x device estimate of it runs
from that trace; a quality point's calibration is one task shared by its devices' parity tasks. A worker that
dies mid-point costs only that point, which the scheduler runs again elsewhere; rows come back in plan order,
so the table does not depend on which worker finished first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .tasks import Failure, calibrate_task, estimate_task, failed_row, failure_of, quality_task, trace_task


@dataclass
class SweepOutcome:
    rows: list  # one per point, in plan order
    computed: int = 0
    reused: int = 0
    failed: int = 0
    damaged: int = 0  # store entries found damaged or foreign, and recomputed
    traces_computed: int = 0
    seconds: dict = field(default_factory=dict)  # task kind -> seconds spent in it (this run, summed over workers)


class _Recorder:
    """Files each finished point and counts what happened; `on_point(row, reused)` sees every point."""

    def __init__(self, plan, store, on_point):
        self.plan, self.store, self.on_point = plan, store, on_point
        self.rows: dict = {}
        self.outcome = SweepOutcome(rows=[])

    def reuse(self, point) -> bool:
        row = self.store.get(point)
        if row is None:
            return False
        self.rows[point.key] = row
        self.outcome.reused += 1
        self._seen(row, True)
        return True

    def finish(self, point, row: dict, failure, seconds: float, kind: str) -> None:
        if failure is None or failure.stable:
            self.store.put(point, row)
        self.rows[point.key] = row
        self.outcome.computed += 1
        self.outcome.failed += row.get("error") is not None
        self.spent(kind, seconds)
        self._seen(row, False)

    def traced(self, trace, layers, seconds: float) -> None:
        if not isinstance(layers, Failure):
            self.store.put_trace(trace, layers)
            self.outcome.traces_computed += 1
        self.spent("trace", seconds)

    def spent(self, kind: str, seconds: float) -> None:
        self.outcome.seconds[kind] = self.outcome.seconds.get(kind, 0.0) + seconds

    def _seen(self, row, reused) -> None:
        if self.on_point is not None:
            self.on_point(row, reused)

    def done(self) -> SweepOutcome:
        self.outcome.rows = [self.rows[p.key] for p in self.plan.points]
        self.outcome.damaged = len(set(self.store.damaged))
        return self.outcome


def _timed(function, *args):
    """The result of a task and its run time, measured where it runs (the worker)."""
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def run_serial(plan, store, on_point=None) -> SweepOutcome:
    recorder = _Recorder(plan, store, on_point)
    traces: dict = {}
    for point in plan.estimates:
        if recorder.reuse(point):
            continue
        trace = point.trace
        if trace.key not in traces:
            traces[trace.key] = store.get_trace(trace)
            if traces[trace.key] is None:
                traces[trace.key], seconds = _timed(trace_task, trace)
                recorder.traced(trace, traces[trace.key], seconds)
        (row, failure), seconds = _timed(estimate_task, point, traces[trace.key])
        recorder.finish(point, row, failure, seconds, "estimate")
    artifacts: dict = {}
    for point in plan.qualities:
        if recorder.reuse(point):
            continue
        calibration = point.calibration
        if calibration.key not in artifacts:
            artifacts[calibration.key], seconds = _timed(
                calibrate_task, calibration, str(store.artifact_dir(calibration.key)))
            recorder.spent("calibrate", seconds)
        (row, failure), seconds = _timed(quality_task, point, artifacts[calibration.key])
        recorder.finish(point, row, failure, seconds, "quality")
    return recorder.done()


def run_dask(plan, store, client, on_point=None) -> SweepOutcome:
    from distributed import as_completed

    recorder = _Recorder(plan, store, on_point)
    futures = {}  # future -> ("trace", TracePoint) | ("calibrate", ...) | (kind, point)
    traces, artifacts = {}, {}
    for point in plan.estimates:
        if recorder.reuse(point):
            continue
        trace = point.trace
        if trace.key not in traces:
            stored = store.get_trace(trace)
            if stored is not None:
                traces[trace.key] = client.scatter(stored, hash=False)
            else:
                future = client.submit(_timed, trace_task, trace, key=f"trace-{trace.key}")
                futures[future] = ("trace", trace)
                traces[trace.key] = client.submit(_first, future, key=f"layers-{trace.key}")
        future = client.submit(_timed, estimate_task, point, traces[trace.key], key=f"estimate-{point.key}")
        futures[future] = ("estimate", point)
    for point in plan.qualities:
        if recorder.reuse(point):
            continue
        calibration = point.calibration
        if calibration.key not in artifacts:
            future = client.submit(_timed, calibrate_task, calibration, str(store.artifact_dir(calibration.key)),
                                   key=f"calibrate-{calibration.key}")
            futures[future] = ("calibrate", calibration)
            artifacts[calibration.key] = client.submit(_first, future, key=f"artifact-{calibration.key}")
        future = client.submit(_timed, quality_task, point, artifacts[calibration.key],
                               key=f"quality-{point.key}")
        futures[future] = ("quality", point)

    for future in _finished(as_completed(list(futures))):
        kind, point = futures.pop(future)
        if future.status != "finished":  # the scheduler gave up (a worker died on it too often)
            if kind in ("estimate", "quality"):
                failure = _scheduler_failure(future)
                recorder.finish(point, failed_row(point, failure), failure, 0.0, kind)
            continue
        result, seconds = future.result()
        if kind == "trace":
            recorder.traced(point, result, seconds)
        elif kind == "calibrate":
            recorder.spent("calibrate", seconds)
        else:
            row, failure = result
            recorder.finish(point, row, failure, seconds, kind)
    return recorder.done()


def _finished(completed):
    """The futures of `completed` (distributed.as_completed) as they finish, with Ctrl-C taken as a flag and raised
    here: raised wherever the main thread happens to be, it can land in a Future's finalizer, which swallows it
    (seen in CI: the sweep then ran to its end)."""
    import signal
    import threading

    interrupted = []
    own = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True)) if own else None
    try:
        while not completed.is_empty():
            if interrupted:
                raise KeyboardInterrupt
            batch = completed.next_batch(block=False)
            if not batch:
                time.sleep(0.02)
            yield from batch
        if interrupted:  # pressed after the last point was seen: the user still asked to stop
            raise KeyboardInterrupt
    finally:
        if own:
            signal.signal(signal.SIGINT, previous)


def _scheduler_failure(future) -> Failure:
    try:
        err = future.exception()
    except Exception as cancelled:  # noqa: BLE001  a cancelled future raises instead of returning its error
        err = cancelled
    return failure_of(err)


def _first(timed):
    return timed[0]


def local_cluster(workers: int, numba_threads: int | None = None):
    """A LocalCluster of `workers` single-threaded processes and its Client. distributed's nanny gives torch and
    BLAS one thread each; Numba gets `numba_threads` per worker, by default the machine's cores shared out
    (it would take them all in every worker), and idle OpenMP threads sleep, as `simdq emulate` sets it."""
    import logging
    import os

    from distributed import Client, LocalCluster

    numba_threads = numba_threads or max(1, (os.cpu_count() or 1) // workers)
    env = {"NUMBA_NUM_THREADS": str(numba_threads), "OMP_WAIT_POLICY": "PASSIVE"}
    # Ctrl-C reaches every process of the terminal's group: the client alone handles it (the workers are closed
    # by their nannies), so no worker prints a traceback, and nothing distributed logs on the way out either
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.CRITICAL, env=env, preload=["simdq.sweep.worker_signals"])
    return Client(cluster)


def connect(address: str):
    """A Client of the cluster at `address`, whose workers must run this simdq on the same libraries (a point's key
    holds the code identity: a worker of other code would file results under keys this one never asks for)."""
    from distributed import Client

    from ..errors import SimdqError
    from .identity import code_identity

    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as err:
        raise SimdqError(f"--scheduler {address}: cannot connect ({str(err).splitlines()[0]})") from None
    identities = client.run(code_identity)
    foreign = {worker: identity for worker, identity in identities.items() if identity != code_identity()}
    if foreign:
        worker, identity = next(iter(foreign.items()))
        client.close()
        raise SimdqError(f"--scheduler {address}: worker {worker} runs {identity}, this is {code_identity()}; "
                         "install the same simdq commit through constraints.txt on every worker")
    return client
