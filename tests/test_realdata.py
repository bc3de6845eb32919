"""Real data, real model: the cpu-course preset (the rendered course's CPU recipe: cpu-demo's on 2,000 real AG News
rows), scored on the full test set."""

import pytest
from conftest import read_json, run_cli


@pytest.mark.slow
def test_minilm_fine_tuned_on_real_rows_reaches_085_on_the_full_test_set(realdata, tmp_path):
    proc = run_cli("train", "--preset", "cpu-course", "--output-dir", str(tmp_path),
                   "--train-file", str(realdata / "train_subset_2000.csv"),
                   "--test-file", str(realdata / "test.csv"), timeout=1200)
    assert "train 1900, validation 100, test 7600" in proc.stdout  # 5% of train held out
    result = read_json(tmp_path / "eval.json")
    assert result["n_examples"] == 7600
    assert result["accuracy"] >= 0.85, result["accuracy"]
    assert min(c["f1"] for c in result["per_class"].values()) > 0.7
