"""Preloaded into every LocalCluster worker process (distributed's `preload`): a worker ignores SIGINT, which a
terminal's Ctrl-C sends to the whole process group, and leaves the interrupt to the client (simdq sweep exits
130, its finished points stored); the worker's nanny then closes it without a traceback."""

import signal


def dask_setup(server) -> None:
    from distributed import Worker

    if isinstance(server, Worker):  # LocalCluster hands the preload to its in-process scheduler too
        signal.signal(signal.SIGINT, signal.SIG_IGN)
