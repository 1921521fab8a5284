"""Design-space sweeps (`simdq sweep`): a SWEEP.yaml's axes crossed into points (spec, plan, points), each run as
a task (tasks) serially or on Dask (run), filed in a resumable results store (store) and gathered into one table
(table). Dask, pandas and pyarrow are the `sweep` extra; nothing below this package imports Dask."""
