"""`simdq sweep`: the axes crossed as written, every point equal to `simdq estimate` of it, serial and Dask runs
that give the same table, a store that resumes, detects damage and survives a killed worker."""

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from unet_fixtures import TINY_UNET

from simdq.cli import main
from simdq.sweep.identity import code_identity
from simdq.sweep.plan import expand
from simdq.sweep.run import run_dask, run_serial
from simdq.sweep.spec import load_sweep
from simdq.sweep.store import ResultStore
from simdq.sweep.table import sweep_frame
from simdq.sweep.tasks import trace_task

BASE = {"model": {"diffusers": {"class": "UNet2DModel", "config": TINY_UNET}},
        "quant": {"weights": "int8", "activations": "int8"}, "convention": "full"}
# 3 schemes x 2 devices x 2 batches = 12 points, two traces
TWELVE = {"base": BASE, "schemes": {"w8a8": {}, "w4a4": {"weights": "int4", "activations": "int4"},
                                    "fp8": {"weights": "e4m3fn", "activations": "e4m3fn"}},
          "devices": ["h100", "jetson:dla@30W"], "batch": [1, 2]}


def plan_of(tmp_path, document, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    spec, folder = load_sweep(path)
    return expand(spec, folder, str(path))


def table(outcome):
    return sweep_frame(outcome.rows)


@pytest.fixture(scope="module")
def serial_twelve(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep-serial")
    plan = plan_of(root, TWELVE)
    return plan, run_serial(plan, ResultStore(root / "store"))


@pytest.fixture(scope="module")
def cluster():
    from simdq.sweep.run import local_cluster

    client = local_cluster(2)
    yield client
    client.close()
    client.cluster.close()


# ---- the plan ------------------------------------------------------------------------------------------------
def test_the_axes_cross_as_written_and_exclude_rules_need_every_key(tmp_path):
    document = {"base": BASE, "schemes": {"a": {}, "b": {"weights": "int4"}}, "weights": ["binary", "int2"],
                "activations": ["int4"], "policies": ["binarydm", "all-quantized"], "devices": ["h100", "xne"],
                "batch": [1, 4], "steps": [10],
                "exclude": [{"device": "xne", "scheme": "int2/*"}, {"policy": "all-*", "batch": 4, "device": "h1*"}]}
    plan = plan_of(tmp_path, document)
    # 4 schemes x 2 policies x 2 devices x 2 batches = 32; int2/int4 on xne: 2 policies x 2 batches = 4;
    # all-quantized at batch 4 on h100: 4 schemes
    assert plan.excluded == 4 + 4 and len(plan.estimates) == 32 - 8
    labels = [dict(p.labels) for p in plan.estimates]
    assert {label["scheme"] for label in labels} == {"a", "b", "binary/int4", "int2/int4"}
    b = next(json.loads(p.config_json) for p in plan.estimates if dict(p.labels)["scheme"] == "b")
    assert b["quant"]["weights"] == "int4" and b["quant"]["activations"] == "int8"  # merged over the base's
    assert all(json.loads(p.config_json)["quant"]["policy"] == dict(p.labels)["policy"] for p in plan.estimates)
    assert len(plan.traces) == 2  # one per batch: every scheme and device reuses it
    assert len({p.key for p in plan.estimates}) == len(plan.estimates)


def test_a_key_is_the_hash_of_everything_that_decides_the_result(tmp_path):
    device = tmp_path / "npu.yaml"
    shutil.copy(Path("hw_models/devices/edgetpu-like.yaml"), device)
    document = {"base": BASE, "devices": ["npu.yaml"]}
    point = plan_of(tmp_path, document).estimates[0]
    record = {"simdq": code_identity(), **point.record()}
    by_hand = hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert point.key == by_hand[:24]
    assert plan_of(tmp_path, document).estimates[0].key == point.key  # stable
    device.write_text(device.read_text().replace("value: 488.0e+6", "value: 500.0e+6"))  # one clock changed
    assert plan_of(tmp_path, document).estimates[0].key != point.key


@pytest.mark.parametrize("change, message", [
    ({"devices": ["h100", "h100"]}, "devices lists 'h100' twice"),
    ({"batch": [True]}, "batch[0]: input should be a valid integer, got True"),
    ({"batch": [0]}, "every batch must be an integer from 1 to 65536"),
    ({"exclude": [{"devise": "h100"}]}, "unknown exclude key 'devise' (did you mean 'device'?)"),
    ({"schemas": {}}, "unknown key (did you mean 'schemes'?)"),
    ({"schemes": {"x": {"weights": "int99"}}}, "scheme x: quant.weights"),
    ({"devices": ["h1000"]}, "unknown device 'h1000'"),
    ({"devices": ["exact"]}, "'exact' is a quality task's arithmetic"),
    ({"base": "missing.yaml"}, "missing.yaml: no such model.yaml"),
    ({"exclude": [{"device": "*"}]}, "every point is excluded"),
])
def test_bad_sweep_files_are_one_line_and_exit_2(tmp_path, capsys, change, message):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": BASE, "devices": ["h100"], **change}))
    assert main(["sweep", str(path), "--workers", "0", "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err


# ---- what a point computes -----------------------------------------------------------------------------------
def test_every_point_is_what_simdq_estimate_gives_for_its_model_yaml(serial_twelve):
    from simdq.cli.estimate import run_estimate
    from simdq.config import parse_config

    plan, outcome = serial_twelve
    assert outcome.computed == 12 and outcome.failed == 0 and outcome.traces_computed == 2
    for point, row in zip(plan.estimates, outcome.rows):
        labels = dict(point.labels)
        estimate = run_estimate(parse_config(json.loads(point.config_json), "x"), labels["device"])
        assert estimate.batch == labels["batch"]
        for key in ("params", "size_mib", "weight_bytes", "macs", "bops", "ops", "latency_s", "energy_j"):
            assert row[key] == estimate.totals[key], (labels, key)
        assert row["latency_per_image_s"] == estimate.per_image["latency_s"]
        assert row["size_saving"] == estimate.baseline["size_mib"] / estimate.totals["size_mib"]


def test_a_point_that_raises_is_a_row_with_its_error_and_the_sweep_goes_on(tmp_path):
    broken = tmp_path / "no-fallback.yaml"  # an NPU with nothing to run elementwise layers on
    broken.write_text(Path("hw_models/devices/edgetpu-like.yaml").read_text().replace("fallback_engine: host\n", ""))
    unbuildable = {**BASE, "model": {"diffusers": {"class": "UNet2DModel",
                                                    "config": {**TINY_UNET, "down_block_types":
                                                               ["DownBlock2D", "NoSuchDownBlock2D"]}}}}
    plan = plan_of(tmp_path, {"base": BASE, "devices": ["h100", "no-fallback.yaml"]})
    outcome = run_serial(plan, ResultStore(tmp_path / "store"))
    good, bad = outcome.rows
    assert good["error"] is None and good["latency_s"] > 0
    assert "no engine runs elementwise layer" in bad["error"] and bad["latency_s"] is None
    assert outcome.failed == 1
    plan = plan_of(tmp_path, {"base": unbuildable, "devices": ["h100"]}, "unbuildable.yaml")
    (row,) = run_serial(plan, ResultStore(tmp_path / "store")).rows
    assert "diffusers cannot build UNet2DModel" in row["error"]


def test_an_estimate_from_a_stored_trace_never_imports_torch(serial_twelve, tmp_path):
    plan, _ = serial_twelve
    store = ResultStore(tmp_path / "store")
    point = plan.estimates[0]
    store.put_trace(point.trace, trace_task(point.trace))
    script = f"""
import pickle, sys
from simdq.sweep.store import ResultStore
from simdq.sweep.tasks import estimate_task
point = pickle.loads({__import__("pickle").dumps(point)!r})
layers = ResultStore({str(tmp_path / "store")!r}).get_trace(point.trace)
row, failure = estimate_task(point, layers)
assert failure is None and row["latency_s"] > 0, row
print("torch" in sys.modules, row["latency_s"])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    imported, latency = result.stdout.split()
    assert imported == "False" and float(latency) == serial_twelve[1].rows[0]["latency_s"]


def test_a_trace_stored_by_other_code_is_traced_again(serial_twelve, tmp_path, monkeypatch):
    import dataclasses

    from simdq.sweep import points

    plan, _ = serial_twelve
    store = ResultStore(tmp_path / "store")
    trace = plan.estimates[0].trace
    store.put_trace(trace, trace_task(trace))
    assert store.get_trace(trace) is not None
    # as other code wrote it (a Layer without fused_attention, say): its rows would read back without the field
    monkeypatch.setattr(points, "code_identity", lambda: "simdq 0.1.0+0000000000000000")
    older = dataclasses.replace(trace)
    assert older.key != trace.key and store.get_trace(older) is None


# ---- serial, Dask, resume, damage, a killed worker -----------------------------------------------------------
def test_a_local_cluster_gives_the_serial_table(serial_twelve, cluster, tmp_path):
    plan, serial = serial_twelve
    outcome = run_dask(plan, ResultStore(tmp_path / "store"), cluster)
    assert outcome.computed == 12 and outcome.traces_computed == 2
    pd.testing.assert_frame_equal(table(outcome), table(serial))
    again = run_dask(plan, ResultStore(tmp_path / "store"), cluster)  # everything from the store
    assert again.computed == 0 and again.reused == 12
    pd.testing.assert_frame_equal(table(again), table(serial))


def test_the_command_runs_on_an_existing_cluster_by_its_address(serial_twelve, cluster, tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(TWELVE))
    assert main(["sweep", str(path), "--scheduler", cluster.scheduler.address, "--store", str(tmp_path / "store"),
                 "-o", str(tmp_path / "r.parquet")]) == 0
    assert "12 points: 12 computed" in capsys.readouterr().err
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "r.parquet"), table(serial_twelve[1]))
    assert cluster.run(lambda: 1)  # the command closed its client, not the cluster it did not start


def test_a_cluster_whose_workers_run_other_code_is_refused_in_one_line(cluster, tmp_path, capsys, monkeypatch):
    import simdq.sweep.identity as identity

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(TWELVE))
    ours = code_identity()
    monkeypatch.setattr(identity, "__version__", "9.9.9")  # this process only: the workers compute their own
    code_identity.cache_clear()
    try:
        assert main(["sweep", str(path), "--scheduler", cluster.scheduler.address, "--store", str(tmp_path / "s"),
                     "-o", str(tmp_path / "r.parquet")]) == 2
    finally:
        monkeypatch.undo()
        code_identity.cache_clear()
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"runs {ours}, this is simdq 9.9.9+{ours.partition('+')[2]}" in error
    assert not (tmp_path / "r.parquet").exists() and code_identity() == ours


def test_an_interrupted_sweep_resumes_with_only_the_missing_points(serial_twelve, tmp_path):
    plan, serial = serial_twelve
    seen = []

    def interrupt_after_five(row, reused):
        seen.append(row["key"])
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_serial(plan, ResultStore(tmp_path / "store"), interrupt_after_five)
    assert len(list((tmp_path / "store" / "points").glob("*.parquet"))) == 5
    resumed = run_serial(plan, ResultStore(tmp_path / "store"))
    assert (resumed.computed, resumed.reused, resumed.traces_computed) == (7, 5, 0)  # the traces were stored too
    pd.testing.assert_frame_equal(table(resumed), table(serial))


def test_a_changed_axis_computes_only_its_new_points(serial_twelve, tmp_path):
    plan, _ = serial_twelve
    store = ResultStore(tmp_path / "store")
    run_serial(plan, store)
    wider = plan_of(tmp_path, {**TWELVE, "batch": [1, 2, 4]})
    outcome = run_serial(wider, ResultStore(tmp_path / "store"))
    assert (outcome.computed, outcome.reused, outcome.traces_computed) == (6, 12, 1)


def test_damaged_and_foreign_store_entries_are_found_and_recomputed(serial_twelve, tmp_path):
    plan, serial = serial_twelve
    root = tmp_path / "store"
    run_serial(plan, ResultStore(root))
    points = sorted((root / "points").glob("*.parquet"))
    truncated, copied_onto, flipped = points[0], points[1], points[2]
    keys = [path.stem.split("-")[0] for path in points]
    truncated.write_bytes(truncated.read_bytes()[:-40])
    shutil.copy(points[3], copied_onto)  # a whole, valid file filed under another point's key
    copied_onto.rename(copied_onto.with_name(f"{copied_onto.stem.split('-')[0]}-{points[3].stem.split('-')[1]}.parquet"))
    data = bytearray(flipped.read_bytes())
    data[len(data) // 8] ^= 0xFF  # among the column pages
    flipped.write_bytes(bytes(data))
    by_key = {p.key: p for p in plan.estimates}
    trace = root / "traces" / f"{by_key[keys[0]].trace.key}.json"  # read again to recompute that point
    document = json.loads(trace.read_text())
    document["layers"][0]["macs"] += 1  # valid JSON, a wrong layer
    trace.write_text(json.dumps(document))
    store = ResultStore(root)
    outcome = run_serial(plan, store)
    assert set(store.damaged) == {keys[0], keys[1], keys[2], trace.stem}
    assert outcome.damaged == 4 and outcome.traces_computed == 1
    pd.testing.assert_frame_equal(table(outcome), table(serial))
    clean = run_serial(plan, ResultStore(root))  # repaired: read back whole
    assert clean.computed == 0 and clean.damaged == 0


def test_a_changed_byte_anywhere_in_a_stored_point_is_detected(serial_twelve, tmp_path):
    plan, _ = serial_twelve
    point = plan.estimates[0]
    store = ResultStore(tmp_path / "store")
    run_serial(plan, store)
    (path,) = (tmp_path / "store" / "points").glob(f"{point.key}-*.parquet")
    whole = path.read_bytes()
    for offset in range(0, len(whole), 7):
        data = bytearray(whole)
        data[offset] ^= 0x20
        path.write_bytes(bytes(data))
        assert store.get(point) is None, offset
    assert len(store.damaged) == len(range(0, len(whole), 7))
    path.write_bytes(whole)
    assert store.get(point)["key"] == point.key


class KillOnce:
    """A worker plugin that kills its worker process when the first estimate starts executing, once per test."""

    def __init__(self, marker: str):
        self.marker = marker

    def setup(self, worker):
        pass

    def teardown(self, worker):
        pass

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith("estimate-"):
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            os._exit(1)


def test_a_worker_killed_mid_point_loses_nothing(serial_twelve, tmp_path):
    import cloudpickle
    from distributed.diagnostics.plugin import WorkerPlugin

    from simdq.sweep.run import local_cluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    plan, serial = serial_twelve
    client = local_cluster(2)
    try:
        marker = tmp_path / "killed"
        plugin = type("KillOncePlugin", (KillOnce, WorkerPlugin), {})(str(marker))
        client.register_plugin(plugin)
        outcome = run_dask(plan, ResultStore(tmp_path / "store"), client)
    finally:
        client.close()
        client.cluster.close()
    assert marker.exists()  # a worker did die with a point on it
    assert outcome.computed == 12 and outcome.failed == 0
    pd.testing.assert_frame_equal(table(outcome), table(serial))


# ---- quality points ------------------------------------------------------------------------------------------
def test_a_quality_point_is_simdq_parity_model_of_its_calibration(tmp_path, capsys):
    document = {"base": BASE, "schemes": {"w8a8": {}}, "devices": ["h100"],
                "quality": [{"devices": ["exact", "h100"], "calibrate": {"samples": 1, "steps": 2, "batch": 1}}]}
    plan = plan_of(tmp_path, document)
    assert len(plan.qualities) == 2 and len({q.calibration.key for q in plan.qualities}) == 1
    store = ResultStore(tmp_path / "store")
    outcome = run_serial(plan, store)
    assert outcome.failed == 0, [r["error"] for r in outcome.rows]
    estimate, exact, h100 = outcome.rows
    artifact = store.artifact_dir(plan.qualities[0].calibration.key)
    capsys.readouterr()
    assert main(["parity", "model", str(artifact), "--hw", "h100", "--format", "json", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert h100["sqnr_db"] == report["trajectories"]["device vs full precision"]["sqnr_db"]
    assert h100["sqnr_vs_fake_quant_db"] == report["trajectories"]["device vs fake-quant"]["sqnr_db"]
    frame = sweep_frame(outcome.rows)
    joined = frame[frame["kind"] == "estimate"].iloc[0]
    assert joined["quality_device"] == "h100" and joined["sqnr_db"] == h100["sqnr_db"]  # same device first
    again = run_serial(plan, ResultStore(tmp_path / "store"))
    assert again.computed == 0 and again.reused == 3


# ---- the command ---------------------------------------------------------------------------------------------
def test_the_command_writes_parquet_csv_markdown_and_the_pareto_chart(serial_twelve, tmp_path, capsys):
    from simdq.report.sweep import pareto_mask, plot_pareto

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(TWELVE))
    store = str(tmp_path / "store")
    assert main(["sweep", str(path), "--workers", "0", "--store", store, "-o", str(tmp_path / "r.parquet"),
                 "--plot", str(tmp_path / "pareto.png")]) == 0
    assert "12 points: 12 computed" in capsys.readouterr().err
    frame = pd.read_parquet(tmp_path / "r.parquet")
    pd.testing.assert_frame_equal(frame, table(serial_twelve[1]))
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sweep", str(path), "--workers", "0", "--store", store, "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("kind,preset,scheme") and len(out.splitlines()) == 13
    assert "0 computed, 12 from" in err
    assert main(["sweep", str(path), "--workers", "0", "--store", store, "--format", "markdown"]) == 0
    assert capsys.readouterr().out.count("\n| base |") == 12
    assert main(["sweep", str(path), "--workers", "0", "--store", store, "--plot", str(tmp_path / "p.xyz")]) == 2
    assert "unknown chart format 'xyz'" in capsys.readouterr().err
    fronts = plot_pareto(frame, str(tmp_path / "again.png"))
    estimates = frame[frame["kind"] == "estimate"]
    on_front = estimates["key"][pareto_mask(estimates["size_mib"].tolist(), estimates["latency_per_image_s"].tolist())]
    assert fronts["latency_size"] and set(fronts["latency_size"]) == set(on_front)


def test_pareto_frontier_by_hand():
    from simdq.report.sweep import pareto_mask

    xs = [1.0, 2.0, 2.0, 3.0, 0.5, float("nan")]
    ys = [5.0, 3.0, 4.0, 3.0, 9.0, 0.0]
    # (2, 4) is beaten by (2, 3); (3, 3) by (2, 3); NaN never counts
    assert pareto_mask(xs, ys) == [True, True, False, False, True, False]
    # larger is better on y: (0.5, 9) beats everything to its right
    assert pareto_mask(xs, ys, maximize_y=True) == [False, False, False, False, True, False]


def test_ctrl_c_on_a_local_cluster_is_one_line_exit_130_and_keeps_finished_points(tmp_path):
    import signal
    import time

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**TWELVE, "batch": list(range(1, 13))}))  # 12 traces: still running at the signal
    store = tmp_path / "store"
    command = [os.path.join(os.path.dirname(sys.executable), "simdq"), "sweep", str(path), "--workers", "2", "--store", str(store),
               "-o", str(tmp_path / "out.csv")]
    # a terminal's Ctrl-C: SIGINT to the whole process group, the workers included
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list((store / "points").glob("*.parquet")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert err.strip().splitlines() == ["simdq: interrupted; no output written"], err[-3000:]
    assert not (tmp_path / "out.csv").exists() and list((store / "points").glob("*.parquet"))


def _dominated_anywhere(xs, ys, maximize_y):
    """The frontier by its definition, every pair compared: the plain twin of the sorted pass."""
    points = [(x, -y if maximize_y else y) for x, y in zip(xs, ys)]
    valid = [not (math.isnan(x) or math.isnan(y)) for x, y in points]
    return [valid[i] and not any(valid[j] and xj <= x and yj <= y and (xj < x or yj < y)
                                 for j, (xj, yj) in enumerate(points) if j != i)
            for i, (x, y) in enumerate(points)]


@given(st.lists(st.tuples(st.sampled_from([0.0, 1.0, 2.0, math.nan]) | st.floats(0, 3),
                          st.sampled_from([0.0, 1.0, math.nan]) | st.floats(0, 3)), max_size=20), st.booleans())
def test_the_sorted_pareto_pass_is_the_definition(points, maximize_y):
    from simdq.report.sweep import pareto_mask

    xs, ys = [x for x, _ in points], [y for _, y in points]
    assert pareto_mask(xs, ys, maximize_y) == _dominated_anywhere(xs, ys, maximize_y)
