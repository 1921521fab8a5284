"""The results store: one file per finished point, named by its key, written atomically the moment it finishes.

```
STORE/points/KEY-SHA.parquet   one row (pyarrow), its point's record and key in the file's metadata; SHA: the
                               first 16 hex digits of the file's own SHA-256
STORE/traces/KEY.json      a traced forward's layers, with the trace's record and a SHA-256 of the layers
STORE/artifacts/KEY/       a quality point's calibrated artifact (simdq calibrate's files)
```
Nothing is trusted on its name alone: an entry is used only when its bytes hash to the digest in its name, it
reads back whole and its stored record hashes to the key it is filed under. A truncated file, any changed byte,
a file copied under another point's name or one written by another simdq version is found, counted and
recomputed, never used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import SimdqError
from ..model.layer import Layer
from ..output import replacing
from .points import canonical, digest

_KEY_META, _RECORD_META = b"simdq:key", b"simdq:record"
_FILE_DIGEST_CHARS = 16


class ResultStore:
    def __init__(self, directory):
        self.directory = Path(directory)
        self.damaged: list = []  # keys of entries found damaged or foreign (then recomputed)
        try:
            for folder in ("points", "traces", "artifacts"):
                (self.directory / folder).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SimdqError(f"--store {directory}: cannot create the results store ({err.strerror})") from None

    def _point_files(self, key: str) -> list:
        return sorted((self.directory / "points").glob(f"{key}-*.parquet"))

    def artifact_dir(self, key: str) -> Path:
        return self.directory / "artifacts" / key

    def get(self, point) -> dict | None:
        """The stored row of `point`, or None (not there, or damaged: then noted in .damaged)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = self._point_files(point.key)
        if not files:
            return None
        try:
            (path,) = files
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest()[:_FILE_DIGEST_CHARS] != path.stem.rpartition("-")[2]:
                raise ValueError("its bytes changed")
            table = pq.read_table(pa.BufferReader(data))
            meta = table.schema.metadata or {}
            rows = table.to_pylist()
            if (meta[_KEY_META].decode() != point.key or digest(json.loads(meta[_RECORD_META])) != point.key
                    or len(rows) != 1 or rows[0].get("key") != point.key):
                raise ValueError("filed under another key")
        except Exception:  # noqa: BLE001  any failure to read back whole is damage, whatever pyarrow raises
            self.damaged.append(point.key)
            return None
        return rows[0]

    def put(self, point, row: dict) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([row])
        table = table.replace_schema_metadata({_KEY_META: point.key.encode(),
                                               _RECORD_META: canonical(point.record()).encode()})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        stale = self._point_files(point.key)
        name = f"{point.key}-{hashlib.sha256(data).hexdigest()[:_FILE_DIGEST_CHARS]}.parquet"
        with replacing(self.directory / "points" / name, "results store") as temporary:
            temporary.write_bytes(data)
        for path in stale:  # a damaged entry it replaces
            if path.name != name:
                path.unlink(missing_ok=True)

    def _trace_path(self, key: str) -> Path:
        return self.directory / "traces" / f"{key}.json"

    def get_trace(self, trace) -> list | None:
        path = self._trace_path(trace.key)
        if not path.exists():
            return None
        try:
            document = json.loads(path.read_text())
            layers = document["layers"]
            if (digest(document["record"]) != trace.key
                    or hashlib.sha256(canonical(layers).encode()).hexdigest() != document["layers_sha256"]):
                raise ValueError("damaged")
            return [_layer(entry) for entry in layers]
        except Exception:  # noqa: BLE001  as in get(): unreadable is damaged
            self.damaged.append(trace.key)
            return None

    def put_trace(self, trace, layers: list) -> None:
        entries = [vars(layer) for layer in layers]
        document = {"record": trace.record(), "layers_sha256": hashlib.sha256(canonical(entries).encode()).hexdigest(),
                    "layers": entries}
        with replacing(self._trace_path(trace.key), "results store") as temporary:
            temporary.write_text(canonical(document))


_TUPLES = ("kernel_size", "input_shape", "output_shape", "gemm_dims", "operand_layouts")


def _layer(entry: dict) -> Layer:
    return Layer(**{k: tuple(_nested_tuple(v)) if k in _TUPLES else v for k, v in entry.items()})


def _nested_tuple(value):
    return tuple(_nested_tuple(v) for v in value) if isinstance(value, list) else value
