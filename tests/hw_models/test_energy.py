"""Energy tables, their derivation rules, node scaling and per-layer energy, against hand arithmetic."""

import pytest
import yaml

from hw_models import LayerWork, load_device
from hw_models.energy import TABLE_DIR, load_table, node_ratio, node_scale
from hw_models.workload import FP32
from simdq.scheme import quant_format


def test_tables_carry_their_sources_and_nodes():
    for path in TABLE_DIR.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        assert data["source"] and data["node_nm"] > 0 and data["operations_pj"] and "dram" in data["memory_pj_per_byte"]


def test_mac_energies_follow_the_documented_rules():
    table = load_table("horowitz-45nm")  # int8 mult 0.2, int32 add 0.1, fp16 mult 1.1, fp32 add 0.9 / mult 3.7
    assert table.mac_pj("int8") == pytest.approx(0.2 + 0.1)
    assert table.mac_pj("int4") == pytest.approx(0.2 / 4 + 0.1)
    assert table.mac_pj("fp16") == pytest.approx(1.1 + 0.9)
    assert table.mac_pj("fp8") == pytest.approx(1.1 * (4 / 11) ** 2 + 0.9)
    assert table.mac_pj("fp32") == pytest.approx(3.7 + 0.9)
    assert table.mac_pj("b1") == pytest.approx(0.03 / 8)
    seven = load_table("jouppi-7nm")  # no int32 add: 4 x int8 add; bf16 multiply given
    assert seven.mac_pj("int8") == pytest.approx(0.07 + 4 * 0.007)
    assert seven.mac_pj("bf16") == pytest.approx(0.21 + 0.38)


def test_node_scaling_passes_through_both_tables():
    assert node_scale(45, 45) == 1 and node_scale(45, 7) == pytest.approx(node_ratio())
    assert node_scale(45, 7) * node_scale(7, 4) == pytest.approx(node_scale(45, 4))
    old, new = load_table("horowitz-45nm"), load_table("jouppi-7nm")
    for key in ("sram_8kb", "sram_32kb", "sram_1mb"):  # the 7 nm table's SRAM is the 45 nm one, scaled
        assert new.memory_pj_per_byte[key] == pytest.approx(old.memory_pj_per_byte[key] * node_ratio(), rel=2e-3)


def test_layer_energy_by_hand():
    device = load_device("jetson")  # horowitz-45nm at 8 nm, LPDDR 64 pJ/B, SRAM 12.5 pJ/B (1 MB)
    scale = node_scale(45, 8)
    add = LayerWork("add", "elementwise", 0, 1000, 0.0, 8000.0, 4000.0, 1, FP32)
    expected = (1000 * 0.9 + 12000 * 12.5) * scale + 12000 * 64
    assert device.estimate_layer(add).energy_j == pytest.approx(expected * 1e-12)
    int8 = quant_format("int8").operand
    gemm = LayerWork("fc", "linear", 256 * 256 * 256, 0, 65536.0, 65536.0, 4 * 65536.0, 1, int8, int8, "fp32",
                     (1, 256, 256, 256))
    tiles = 2  # 256 / 128 along each side: A and B are each read twice from on-chip memory
    onchip = 65536 * tiles + 65536 * tiles + 4 * 65536
    rescale = 2 * 256 * 256 * 0.9  # dequantize and requantize each output: an fp32 op each
    expected = (256**3 * (0.2 + 0.1) + rescale + onchip * 12.5) * scale + (65536 + 65536 + 4 * 65536) * 64
    estimate = device.estimate_layer(gemm)
    assert estimate.compute_precision == "int8"
    assert estimate.energy_j == pytest.approx(expected * 1e-12)


def test_energy_block_errors(tmp_path):
    from hw_models import DeviceFileError
    from hw_models.catalog import DEVICE_DIR

    data = yaml.safe_load((DEVICE_DIR / "jetson-agx-orin-64gb.yaml").read_text())
    data["energy"]["table"] = "horowitz-46nm"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DeviceFileError, match=r"energy\.table: unknown energy table 'horowitz-46nm' \(did you mean 'horowitz-45nm'\?\); allowed: "):
        load_device(str(path))


def test_a_device_can_bring_its_own_energy_table(tmp_path):
    from hw_models import DeviceFileError
    from hw_models.catalog import DEVICE_DIR

    data = yaml.safe_load((DEVICE_DIR / "jetson-agx-orin-64gb.yaml").read_text())
    own = {"name": "my-node", "source": "my measurements", "node_nm": 8,
           "operations_pj": {"int8_add": 0.01, "int8_mult": 0.05, "fp32_add": 0.2, "fp32_mult": 0.6},
           "memory_pj_per_byte": {"sram_1mb": 2.0, "dram": 40.0}}
    data["energy"] = {"table": own, "node_nm": {"value": 8, "source": "same node as the table"}}
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(data))
    add = LayerWork("add", "elementwise", 0, 1000, 0.0, 8000.0, 4000.0, 1, FP32)
    expected = (1000 * 0.2 + 12000 * 2.0) + 12000 * 40.0  # no node scaling: the table is at the device's node
    assert load_device(str(path)).estimate_layer(add).energy_j == pytest.approx(expected * 1e-12)
    del own["operations_pj"]["fp32_mult"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DeviceFileError, match=r"energy\.table\.operations_pj\.fp32_mult: required key is missing$"):
        load_device(str(path))
