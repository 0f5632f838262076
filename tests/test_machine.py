"""bnbook.bench.machine: bandwidth and the description of the machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnbook.bench import machine
from bnlib._kernels import blocked


def test_measure_bandwidth_is_positive_and_finite():
    bandwidth = machine.measure_bandwidth(nbytes=1 << 20, repeats=2)
    assert np.isfinite(bandwidth) and bandwidth > 0


@pytest.mark.parametrize(("nbytes", "repeats"), [(4, 5), (1 << 20, 0)])
def test_measure_bandwidth_rejects_bad_sizes(nbytes, repeats):
    with pytest.raises(ValueError, match="nbytes >= 8 and repeats >= 1"):
        machine.measure_bandwidth(nbytes=nbytes, repeats=repeats)


def test_machine_info_names_cpu_versions_and_threads():
    info = machine.machine_info()
    assert info["numpy"] == np.__version__
    assert info["torch"] == torch.__version__
    assert info["torch threads"] == str(torch.get_num_threads())
    assert info["bnlib threads"] == str(blocked.get_num_threads())
    assert info["cpu"] and info["platform"] and "usable" in info["cores"]
    assert "BLAS" in info["numpy threads"]


def test_have_torch_when_torch_is_installed():
    assert machine.have_torch()


def _cache(folder, index, level, kind, size):
    d = folder / f"index{index}"
    d.mkdir()
    (d / "level").write_text(f"{level}\n")
    (d / "type").write_text(f"{kind}\n")
    (d / "size").write_text(f"{size}\n")


def test_cache_sizes_reads_levels_types_and_units(tmp_path):
    _cache(tmp_path, 0, 1, "Data", "48K")
    _cache(tmp_path, 1, 1, "Instruction", "32K")
    _cache(tmp_path, 2, 2, "Unified", "2048K")
    _cache(tmp_path, 3, 3, "Unified", "480M")
    assert machine.cache_sizes(str(tmp_path)) == {
        "L1d": 48 * 1024,
        "L1i": 32 * 1024,
        "L2": 2 * 1024 * 1024,
        "L3": 480 * 1024 * 1024,
    }


def test_cache_sizes_of_a_missing_folder_is_empty(tmp_path):
    assert machine.cache_sizes(str(tmp_path / "nowhere")) == {}


def test_machine_info_lists_the_caches():
    assert "caches" in machine.machine_info()


def test_measure_bandwidth_keeps_the_fastest_copy(monkeypatch):
    # copies timed 4 s, 1 s, 2 s: a slowed copy must not lower the bandwidth
    clock = iter([0.0, 4.0, 10.0, 11.0, 20.0, 22.0])
    monkeypatch.setattr(machine.time, "perf_counter", lambda: next(clock))
    nbytes = 1 << 10
    assert machine.measure_bandwidth(nbytes=nbytes, repeats=3) == 2 * nbytes / 1.0
