"""Tests for distrinews.data: CSV forms, bad rows, sources, auto fallback, caps and real files."""

import sys
import types
from pathlib import Path

import pytest

from distrinews import data
from distrinews.data import (HUB_DATASET, SOURCES, DataError, NewsData, NewsSplit, describe,
                             load_news, read_news_csv)

REAL = Path(__file__).resolve().parents[2] / "shared/realdata/ag_news"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real AG News files not found at {REAL}")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Never let a test reach for the network; tests that need the hub path unset this. No local AG News folder
    either (the checkout's sibling or $DISTRINEWS_AG_NEWS), unless a test names one."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv(data.LOCAL_DATA_ENV, raising=False)
    monkeypatch.setattr(data, "CHECKOUT_ROOT", Path("/nonexistent-checkout"))


def write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def original_csv(tmp_path, name="orig.csv", rows=None, header=False):
    rows = rows or [(1, "World title", "world desc"), (2, "Sport", "desc"),
                    (3, "Biz", "desc"), (4, "Tech", "desc")]
    lines = ['"Class Index","Title","Description"'] if header else []
    lines += [f'"{c}","{t}","{d}"' for c, t, d in rows]
    return write(tmp_path / name, "\n".join(lines) + "\n")


def hf_csv(tmp_path, name="hf.csv", rows=None):
    rows = rows or [(0, "World", "a world text"), (3, "Sci/Tech", "a tech text")]
    lines = ['"label","label_text","text"'] + [f'"{l}","{n}","{t}"' for l, n, t in rows]
    return write(tmp_path / name, "\n".join(lines) + "\n")


def kaggle_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True)
    original_csv(folder, "train.csv", header=True)
    original_csv(folder, "test.csv", rows=[(2, "Test", "row")], header=True)
    return folder


# ---- CSV forms -------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [False, True])
def test_original_form_with_and_without_header(tmp_path, header):
    texts, labels, skipped = read_news_csv(original_csv(tmp_path, header=header))
    assert texts[0] == "World title world desc"
    assert labels == [0, 1, 2, 3] and skipped == 0


def test_original_header_is_case_and_space_insensitive(tmp_path):
    path = write(tmp_path / "x.csv", ' class index , TITLE,description\n"4","T","D"\n')
    assert read_news_csv(path) == (["T D"], [3], 0)


def test_hf_form_with_extra_column_and_swapped_order(tmp_path):
    assert read_news_csv(hf_csv(tmp_path)) == (["a world text", "a tech text"], [0, 3], 0)
    path = write(tmp_path / "swapped.csv", 'text,label_text,label\n"hello there","Sports","1"\n')
    assert read_news_csv(path) == (["hello there"], [1], 0)


def test_bom_is_accepted(tmp_path):
    path = write(tmp_path / "bom.csv", 'label,text\n2,"money talk"\n', bom=True)
    assert read_news_csv(path) == (["money talk"], [2], 0)
    path = write(tmp_path / "bom2.csv", '"3","T","D"\n', bom=True)
    assert read_news_csv(path) == (["T D"], [2], 0)


def test_quoted_commas_quotes_and_newlines_kept_exactly(tmp_path):
    path = write(tmp_path / "q.csv", '"1","A, B ""quoted""","line one\nline two"\n"2","x","y"\n')
    texts, labels, _ = read_news_csv(path)
    assert texts == ['A, B "quoted" line one\nline two', "x y"]
    assert labels == [0, 1]


def test_text_is_not_normalised(tmp_path):
    path = write(tmp_path / "ws.csv", '"1","  Title ","desc\\\\n  "\n')
    assert read_news_csv(path)[0] == ["  Title  desc\\\\n  "]


# ---- bad rows --------------------------------------------------------------------------------


@pytest.mark.parametrize("content, line, words", [
    ('"1","a","b"\n"2","only two"\n', 2, "expected 3 fields"),
    ('"1","a","b"\n"0","a","b"\n', 2, "1-4"),
    ('"5","a","b"\n', 1, "1-4"),
    ('"1","a","b"\n"x","a","b"\n', 2, "not an integer"),
    ('"1","a","b"\n"2"," ",""\n', 2, "text is empty"),
    ('label,text\n0,ok\n4,"too big"\n', 3, "0-3"),
    ('label,text\n0,ok\n1.5,"no"\n', 3, "not an integer"),
    ('label,text\n0,"   "\n', 2, "text is empty"),
    ('label,text\n0,ok,extra\n', 2, "expected 2 fields"),
    ('"1","multi\nline","x"\n"9","a","b"\n', 3, "out of range"),
])
def test_bad_row_errors_name_file_and_line(tmp_path, content, line, words):
    path = write(tmp_path / "bad.csv", content)
    with pytest.raises(DataError) as info:
        read_news_csv(path)
    message = str(info.value)
    assert f"{path}, line {line}:" in message and words in message and "bad_rows='skip'" in message


def test_skip_policy_counts_bad_rows(tmp_path):
    path = write(tmp_path / "mixed.csv", '"1","a","b"\n"0","a","b"\n"2","c","d"\n"x","e","f"\n')
    assert read_news_csv(path, bad_rows="skip") == (["a b", "c d"], [0, 1], 2)


def test_skip_policy_is_logged_by_load_news(tmp_path):
    train = write(tmp_path / "train.csv", '"1","a","b"\n"7","a","b"\n"2","c","d"\n')
    logs = []
    data = load_news("files", train_files=[train], test_file=original_csv(tmp_path),
                     bad_rows="skip", log=logs.append)
    assert len(data.train) == 2
    assert any(f"skipped 1 bad rows in {train} (first: line 2: label 7" in m for m in logs)


def test_unknown_bad_rows_policy(tmp_path):
    with pytest.raises(DataError, match="error, skip"):
        read_news_csv(original_csv(tmp_path), bad_rows="ignore")
    with pytest.raises(DataError, match="bad_rows"):
        load_news("synthetic", bad_rows="drop")


def test_missing_empty_and_unrecognised_files(tmp_path):
    with pytest.raises(DataError, match="does not exist.*train.csv"):
        read_news_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is empty"):
        read_news_csv(write(tmp_path / "empty.csv", ""))
    with pytest.raises(DataError, match="no data rows"):
        read_news_csv(write(tmp_path / "head.csv", "label,text\n"))
    with pytest.raises(DataError, match="line 1: unrecognised header"):
        read_news_csv(write(tmp_path / "odd.csv", "id,body\n1,x\n"), bad_rows="skip")


def test_all_rows_bad_under_skip_is_still_an_error(tmp_path):
    bad = write(tmp_path / "bad.csv", '"9","a","b"\n')
    assert read_news_csv(bad, bad_rows="skip") == ([], [], 1)
    with pytest.raises(DataError, match="no usable data rows"):
        load_news("files", train_files=[bad], test_file=original_csv(tmp_path), bad_rows="skip",
                  log=lambda m: None)


# ---- sources ---------------------------------------------------------------------------------


def test_files_source_concatenates_train_files_in_order(tmp_path):
    a = original_csv(tmp_path, "a.csv")
    b = hf_csv(tmp_path, "b.csv")
    logs = []
    data = load_news("files", train_files=[a, b], test_file=a, log=logs.append)
    assert isinstance(data, NewsData) and data.validation is None
    assert data.train.labels == (0, 1, 2, 3, 0, 3)
    assert data.train.texts[-1] == "a tech text" and data.test.name == "test"
    assert data.source == f"files: {a} + {b} (train), {a} (test)"
    assert logs == [f"data: {data.source} | train 6, validation 0, test 4"]


def test_files_source_needs_both_files(tmp_path):
    a = original_csv(tmp_path)
    with pytest.raises(DataError, match="--test-file"):
        load_news("files", train_files=[a])
    with pytest.raises(DataError, match="--train-file"):
        load_news("files", test_file=a)
    with pytest.raises(DataError, match="--train-file"):
        load_news("files", train_files=None, test_file=a)
    assert len(load_news("files", train_files=str(a), test_file=a, log=lambda m: None).train) == 4
    with pytest.raises(DataError, match="--test-file"):
        load_news("auto", train_files=a)  # auto with a file given means files, not a fallback


@pytest.mark.parametrize("source", ["synthetic", "hub", "kaggle"])
def test_files_given_to_a_source_that_reads_none_are_refused(tmp_path, source):
    """`--preset smoke --train-file X` used to train on synthetic news and say nothing about X."""
    a = original_csv(tmp_path)
    with pytest.raises(DataError, match=rf"--data {source} reads no files, but {a} and {a} given: .*--data files"):
        load_news(source, train_files=[a], test_file=a, kaggle_root=tmp_path)
    with pytest.raises(DataError, match="/nonexistent.csv given"):
        load_news(source, train_files="/nonexistent.csv", kaggle_root=tmp_path)
    with pytest.raises(DataError, match="reads no files, but .*test.csv given"):
        load_news(source, test_file=tmp_path / "test.csv", kaggle_root=tmp_path)


@pytest.mark.parametrize("source", ["auto", "files"])
def test_files_given_are_used_and_a_missing_one_is_named_before_any_is_read(tmp_path, source):
    a = original_csv(tmp_path)
    data = load_news(source, train_files=[a], test_file=a, kaggle_root=tmp_path, log=lambda m: None)
    assert data.source.startswith("files:") and len(data.train) == 4
    missing = tmp_path / "nonexistent.csv"
    for train, test in (([a, missing], a), ([a], missing), ([missing], a)):
        with pytest.raises(DataError, match=rf"{missing} does not exist"):
            load_news(source, train_files=train, test_file=test, kaggle_root=tmp_path)


@pytest.mark.parametrize("layout", ["ag-news-classification-dataset",
                                    "datasets/amananandrai/ag-news-classification-dataset"])
def test_kaggle_discovery_at_both_layouts(tmp_path, layout):
    kaggle_dataset(tmp_path / "other-data")  # not AG News by name, so not preferred
    folder = kaggle_dataset(tmp_path / layout)
    logs = []
    data = load_news("kaggle", kaggle_root=tmp_path, log=logs.append)
    assert data.source == f"kaggle: {folder}/train.csv (train), {folder}/test.csv (test)"
    assert (len(data.train), len(data.test)) == (4, 1)
    assert load_news("auto", kaggle_root=tmp_path, log=logs.append).source == data.source


def test_kaggle_missing_says_how_to_attach(tmp_path):
    (tmp_path / "deep/a/b/c").mkdir(parents=True)  # deeper than searched
    kaggle_dataset(tmp_path / "deep/a/b/c/ag_news")
    with pytest.raises(DataError, match="Add Input.*AG News") as info:
        load_news("kaggle", kaggle_root=tmp_path)
    assert "datasets/<owner>/<slug>" in str(info.value)


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_hub_offline_env_fails_fast(monkeypatch, var):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv(var, "1")
    monkeypatch.setitem(sys.modules, "datasets", None)  # importing it would fail the test
    with pytest.raises(DataError, match=f"{var}=1.*Internet.*--data files.*--data synthetic"):
        load_news("hub")


def fake_datasets(monkeypatch, load_dataset):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))


def test_hub_error_is_one_line_with_fix(monkeypatch):
    def unreachable(name):
        raise ConnectionError("Couldn't reach huggingface.co\nsecond line")
    fake_datasets(monkeypatch, unreachable)
    with pytest.raises(DataError) as info:
        load_news("hub")
    message = str(info.value)
    assert "ConnectionError: Couldn't reach huggingface.co" in message and "second line" not in message
    assert HUB_DATASET in message and "Internet" in message


def test_hub_success_reads_train_and_test(monkeypatch):
    calls = []

    def load_dataset(name):
        calls.append(name)
        return {"train": {"text": ["a", "b"], "label": [0, 3]}, "test": {"text": ["c"], "label": [1]}}
    fake_datasets(monkeypatch, load_dataset)
    data = load_news("hub", log=lambda m: None)
    assert calls == [HUB_DATASET]
    assert (data.train.texts, data.train.labels, data.test.labels) == (("a", "b"), (0, 3), (1,))


def test_auto_falls_back_to_synthetic_loudly(tmp_path):
    logs = []
    data = load_news("auto", kaggle_root=tmp_path, synthetic_train_size=40,
                     synthetic_test_size=12, log=logs.append)
    assert (len(data.train), len(data.test)) == (40, 12)
    assert data.source.startswith("synthetic")
    assert any("SYNTHETIC" in m and "HF_HUB_OFFLINE=1" in m for m in logs)
    assert logs[-1].startswith("data: synthetic")


def test_auto_falls_back_when_hub_unreachable(tmp_path, monkeypatch):
    def unreachable(name):
        raise OSError("no network")
    fake_datasets(monkeypatch, unreachable)
    logs = []
    load_news(kaggle_root=tmp_path, synthetic_train_size=8, synthetic_test_size=4, log=logs.append)
    assert any("hub unreachable (OSError: no network)" in m and "SYNTHETIC" in m for m in logs)


def test_auto_reads_the_local_folder_named_by_the_environment_before_the_hub(tmp_path, monkeypatch):
    folder = tmp_path / "ag_news"
    folder.mkdir()
    hf_csv(folder, "b_part.csv", rows=[(1, "Sports", "a match")])
    hf_csv(folder, "a_part.csv")  # train files are read in name order, every CSV but test.csv
    original_csv(folder, "test.csv", rows=[(4, "Chips", "faster")])
    monkeypatch.setenv(data.LOCAL_DATA_ENV, str(folder))
    monkeypatch.setattr(data, "_try_hub", lambda: pytest.fail("the hub was tried before the local folder"))
    logs = []
    news = load_news("auto", kaggle_root=tmp_path / "none", log=logs.append)
    assert news.train.texts == ("a world text", "a tech text", "a match") and news.test.labels == (3,)
    assert news.source.startswith(f"local: {folder} (a_part.csv, b_part.csv train")
    assert logs[-1] == f"data: {news.source} | train 3, validation 0, test 1"
    assert data.count_rows([folder / "a_part.csv", folder / "b_part.csv"]) == 3


def test_a_folder_without_test_csv_is_no_local_dataset(tmp_path, monkeypatch):
    hf_csv(tmp_path, "train.csv")
    monkeypatch.setenv(data.LOCAL_DATA_ENV, str(tmp_path))
    assert data.local_dataset_dir() is None
    original_csv(tmp_path, "test.csv")
    assert data.local_dataset_dir() == tmp_path and data.local_dataset_files(tmp_path) == (
        [tmp_path / "train.csv"], tmp_path / "test.csv")  # train.csv wins over other CSVs


@needs_real
def test_a_checkout_finds_the_shared_real_rows_beside_it(monkeypatch):
    monkeypatch.setattr(data, "CHECKOUT_ROOT", REAL.parents[2] / "main")
    if not (data.CHECKOUT_ROOT / "lib" / "distrinews").is_dir():
        pytest.skip("this checkout is not the shared folder's sibling")
    assert data.local_dataset_dir() == REAL
    news = load_news("auto", kaggle_root=REAL / "none", max_train_rows=2000, log=lambda m: None)
    assert (len(news.train), len(news.test)) == (2000, 7600) and news.source.startswith(f"local: {REAL}")


def test_requested_real_sources_do_not_fall_back(tmp_path):
    for source, kwargs in [("hub", {}), ("kaggle", {"kaggle_root": tmp_path}),
                           ("files", {"train_files": [tmp_path / "missing.csv"],
                                      "test_file": tmp_path / "missing.csv"})]:
        logs = []
        with pytest.raises(DataError):
            load_news(source, log=logs.append, **kwargs)
        assert logs == [], source


def test_synthetic_test_set_differs_from_train():
    data = load_news("synthetic", synthetic_train_size=50, synthetic_test_size=50, log=lambda m: None)
    assert data.train.texts != data.test.texts
    assert set(data.train.labels) <= {0, 1, 2, 3}


def test_unknown_source_lists_sources():
    with pytest.raises(DataError, match=", ".join(SOURCES)):
        load_news("web")


# ---- caps and validation ---------------------------------------------------------------------


def make_files(tmp_path, n):
    rows = [((i % 4) + 1, f"title {i}", "d") for i in range(n)]
    return {"train_files": [original_csv(tmp_path, "tr.csv", rows)],
            "test_file": original_csv(tmp_path, "te.csv", rows)}


def test_caps_are_seeded_and_logged(tmp_path):
    files = make_files(tmp_path, 100)
    logs = []
    one = load_news("files", **files, max_train_rows=30, max_test_rows=10, log=logs.append)
    two = load_news("files", **files, max_train_rows=30, max_test_rows=10, log=lambda m: None)
    other = load_news("files", **files, max_train_rows=30, seed=7, log=lambda m: None)
    assert (len(one.train), len(one.test)) == (30, 10)
    assert one == two and one.train != other.train
    assert "capped train from 100 to 30 rows" in logs and "capped test from 100 to 10 rows" in logs
    big = load_news("files", **files, max_train_rows=1000, log=lambda m: None)
    assert len(big.train) == 100


def test_val_fraction_is_seeded_and_disjoint(tmp_path):
    files = make_files(tmp_path, 100)
    one = load_news("files", **files, max_train_rows=50, val_fraction=0.2, log=lambda m: None)
    two = load_news("files", **files, max_train_rows=50, val_fraction=0.2, log=lambda m: None)
    assert one == two
    assert (len(one.train), len(one.validation)) == (40, 10)
    assert one.validation.name == "validation"
    assert not set(one.train.texts) & set(one.validation.texts)


@pytest.mark.parametrize("kwargs", [{"val_fraction": 1.0}, {"val_fraction": -0.1},
                                    {"max_train_rows": 0}, {"max_test_rows": -5},
                                    {"max_train_rows": 2.5}])
def test_out_of_range_options(kwargs):
    with pytest.raises(DataError):
        load_news("synthetic", log=lambda m: None, **kwargs)


def test_describe_counts_per_label_name():
    split = NewsSplit("train", ("a", "b", "c"), (0, 0, 3))
    assert len(split) == 3
    assert describe(split) == {"World": 2, "Sports": 0, "Business": 0, "Sci/Tech": 1}


# ---- the real files --------------------------------------------------------------------------


@needs_real
def test_real_test_csv():
    texts, labels, skipped = read_news_csv(REAL / "test.csv")
    assert (len(texts), skipped) == (7600, 0)
    assert describe(NewsSplit("test", tuple(texts), tuple(labels))) == dict.fromkeys(
        ("World", "Sports", "Business", "Sci/Tech"), 1900)
    first = (REAL / "test.csv").read_text(encoding="utf-8").splitlines()[0]
    label, title, description = first[1:-1].split('","')
    assert texts[0] == title + " " + description and labels[0] == int(label) - 1


@needs_real
@pytest.mark.parametrize("name", ["train_subset_2000.csv", "valid_subset_2000.csv"])
def test_real_hf_form_subsets(name):
    texts, labels, skipped = read_news_csv(REAL / name)
    assert (len(texts), skipped) == (2000, 0)
    assert set(labels) == {0, 1, 2, 3}


def test_undecodable_and_broken_csv_are_data_errors(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes('"1","caf\xe9","x"\n'.encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_news_csv(latin)
    broken = tmp_path / "huge.csv"
    broken.write_text('"1","a","b"\n"2","' + "a" * 200_000 + '","b"\n')  # over csv's field limit
    with pytest.raises(DataError, match="line 2: broken CSV"):
        read_news_csv(broken)
