"""results.committed_results: GPU measurements committed to results/, shown beside a reader's own numbers."""

import csv

from distrinews import results


def write_rows(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_committed_rows_come_with_their_hardware_and_date(tmp_path):
    write_rows(tmp_path / "train.csv", [
        {"label": "Tesla T4", "gpu_count": 2, "timestamp": "2026-12-01T10:00:00Z", "world_size": 1,
         "samples_per_s": 210.5, "step_ms": 152.0},
        {"label": "Tesla T4", "gpu_count": 2, "timestamp": "2026-12-01T10:05:00Z", "world_size": 2,
         "samples_per_s": 398.0, "step_ms": 160.8}])
    table = results.committed_results("train", ["world_size", "samples_per_s"], folder=tmp_path, world_size=2)
    assert list(table.columns) == ["hardware", "gpu_count", "measured (UTC)", "world_size", "samples_per_s"]
    assert table.to_dict("records") == [{"hardware": "Tesla T4", "gpu_count": 2,
                                         "measured (UTC)": "2026-12-01T10:05:00Z", "world_size": 2,
                                         "samples_per_s": 398.0}]


def test_without_a_measurement_it_says_so_plainly(tmp_path, capsys):
    assert results.committed_results("allreduce", folder=tmp_path) is None
    assert "No measurement on real GPUs is committed for this yet" in capsys.readouterr().out
    write_rows(tmp_path / "train.csv", [{"label": "Tesla T4", "gpu_count": 1, "timestamp": "t", "world_size": 1}])
    assert results.committed_results("train", folder=tmp_path, world_size=2) is None  # no matching row
    assert results.committed_results("train", folder=tmp_path, bucket_cap_mb=25) is None  # no such column


def test_cpu_rows_are_labelled_as_no_gpu_figure():
    import pandas as pd

    rows = pd.DataFrame({"label": ["CPU: Intel Xeon (2 cores)"]})
    assert results.measured_on(rows) == "CPU MEASUREMENT (not a GPU figure): CPU: Intel Xeon (2 cores)"
    assert results.measured_on(pd.DataFrame({"label": ["Tesla T4"]})) == "Tesla T4"
