"""Load AG News from local CSVs, a Kaggle input folder, a local AG News folder, the hub, or synthetic text.

Every split comes out the same way: texts (title + " " + description) and labels 0-3.
Bad input raises DataError with the file, the line and how to fix it; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .labels import LABEL_NAMES, NUM_LABELS

SOURCES = ("auto", "hub", "kaggle", "files", "synthetic")
HUB_DATASET = "fancyzhx/ag_news"
BAD_ROW_POLICIES = ("error", "skip")

_ORIGINAL_HEADER = ["classindex", "title", "description"]
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
LOCAL_DATA_ENV = "DISTRINEWS_AG_NEWS"  # names a folder of real AG News CSVs on this machine (see local_dataset_dir)
CHECKOUT_ROOT = Path(__file__).resolve().parents[2]  # the repository, when the library runs from a checkout
_EXPECTED_FILES = (
    "expected an AG News CSV: the original form (class 1-4, title, description; e.g. train.csv and "
    "test.csv of Kaggle's 'AG News Classification Dataset') or the Hugging Face form (a header "
    "with label and text columns, labels 0-3)"
)
_ROW_FIX = "Fix or delete that row, or load with bad_rows='skip' to skip and count bad rows."
_HUB_FIX = (
    "To fix: on Kaggle turn on Internet (notebook Settings -> Internet); or use local CSVs with "
    "--data files --train-file TRAIN.csv --test-file TEST.csv; or run offline with --data synthetic."
)
_KAGGLE_FIX = (
    "To fix: in the Kaggle notebook click 'Add Input', search 'AG News' and add a dataset with "
    "train.csv and test.csv (e.g. 'AG News Classification Dataset'); or use --data hub, "
    "--data files --train-file ... --test-file ..., or --data synthetic."
)


class DataError(ValueError):
    """Bad or missing input data; the message names the file/row and how to fix it."""


@dataclass(frozen=True)
class NewsSplit:
    """One split of the data: parallel tuples of texts and labels 0-3."""

    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class NewsData:
    """The splits to train and evaluate on, plus a human description of where they came from."""

    train: NewsSplit
    test: NewsSplit
    validation: NewsSplit | None
    source: str


class _BadRow(Exception):
    """One data row that cannot be used; the message says why."""


# ---- reading one CSV -------------------------------------------------------------------------


def read_news_csv(path, bad_rows: str = "error") -> tuple[list[str], list[int], int]:
    """Read one AG News CSV in either form; return texts, labels and the number of skipped rows."""
    texts, labels, problems = _read_rows(Path(path), bad_rows)
    return texts, labels, len(problems)


def _read_rows(path: Path, bad_rows: str) -> tuple[list[str], list[int], list[str]]:
    """Read a CSV; return texts, labels and one 'line N: reason' per skipped row."""
    _check_choice("bad_rows", bad_rows, BAD_ROW_POLICIES)
    _check_file(path)
    texts, labels, problems = [], [], []
    parse, next_line = None, 1
    try:
        # utf-8-sig drops the BOM that Excel and some exporters put in front of the header.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            for row in reader:
                # Quoted fields may span lines, so a row starts where the previous one ended.
                line, next_line = next_line, reader.line_num + 1
                if not row:  # a blank line holds no data, so skipping it loses nothing
                    continue
                if parse is None:
                    parse, is_header = _detect_form(row, path, line)
                    if is_header:
                        continue
                try:
                    text, label = parse(row)
                except _BadRow as bad:
                    if bad_rows == "error":
                        raise DataError(f"{path}, line {line}: {bad}. {_ROW_FIX}") from None
                    problems.append(f"line {line}: {bad}")
                    continue
                texts.append(text)
                labels.append(label)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error}). Re-save the file as UTF-8 CSV.") from None
    except csv.Error as error:
        raise DataError(f"{path}, line {next_line}: broken CSV ({error}). Check the quoting.") from None
    if parse is None:
        raise DataError(f"{path} is empty; {_EXPECTED_FILES}.")
    if not texts and not problems:
        raise DataError(f"{path} has a header but no data rows; add rows or pick another file.")
    return texts, labels, problems


def _check_file(path: Path) -> None:
    """Fail early, with a hint, when the path is not a readable file."""
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"{path} {what} (working directory: {Path.cwd()}); {_EXPECTED_FILES}.")


def _detect_form(first_row: list[str], path: Path, line: int):
    """Return (row parser, whether the first row is a header) for the file's form."""
    names = ["".join(field.split()).lower() for field in first_row]
    if names == _ORIGINAL_HEADER:
        return _parse_original, True
    if "label" in names and "text" in names:
        return _hf_parser(len(names), names.index("label"), names.index("text")), True
    if _as_int(first_row[0]) is not None:
        return _parse_original, False
    raise DataError(
        f"{path}, line {line}: unrecognised header {first_row!r}; {_EXPECTED_FILES}. "
        "Rename the header columns or remove the header line."
    )


def _parse_original(row: list[str]) -> tuple[str, int]:
    """Parse an original-form row: class index 1-4, title, description."""
    if len(row) != 3:
        raise _BadRow(f"expected 3 fields (class index, title, description), found {len(row)}")
    label = _parse_label(row[0], first=1, form="original") - 1
    return _require_text(row[1] + " " + row[2]), label


def _hf_parser(width: int, label_at: int, text_at: int) -> Callable[[list[str]], tuple[str, int]]:
    """Build a parser for Hugging Face-form rows with the given column positions."""

    def parse(row: list[str]) -> tuple[str, int]:
        if len(row) != width:
            raise _BadRow(f"expected {width} fields like the header, found {len(row)}")
        return _require_text(row[text_at]), _parse_label(row[label_at], first=0, form="Hugging Face")

    return parse


def _parse_label(field: str, first: int, form: str) -> int:
    """Check a label field against the numbering this file's form uses (1-4 or 0-3)."""
    value = _as_int(field)
    if value is None:
        raise _BadRow(f"label {field!r} is not an integer")
    if not first <= value < first + NUM_LABELS:
        names = ", ".join(f"{first + i}={name}" for i, name in enumerate(LABEL_NAMES))
        last = first + NUM_LABELS - 1
        raise _BadRow(f"label {value} is out of range; the {form} form uses {first}-{last} ({names})")
    return value


def _require_text(text: str) -> str:
    """Return the text unchanged, or reject it when it is blank."""
    if not text.strip():
        raise _BadRow("text is empty")
    return text


def _as_int(field: str) -> int | None:
    """Return the field as an int, or None when it is not one."""
    try:
        return int(field)
    except ValueError:
        return None


# ---- sources ---------------------------------------------------------------------------------


def load_news(source: str = "auto", *, train_files=(), test_file=None, kaggle_root="/kaggle/input",
              max_train_rows=None, max_test_rows=None, val_fraction=0.0, seed=42,
              synthetic_train_size=2000, synthetic_test_size=500, bad_rows="error",
              log=print) -> NewsData:
    """Load AG News from `source`; "auto" tries files, then kaggle, then a local folder, then hub, then synthetic.

    auto: "files" if train_files or test_file is given (then both are required); else "kaggle" if
    a folder with train.csv and test.csv is under kaggle_root; else the local AG News folder
    (local_dataset_dir: $DISTRINEWS_AG_NEWS or the checkout's sibling shared/realdata/ag_news); else "hub"
    unless HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set or the download fails; else "synthetic", loudly.
    A source asked for by name never falls back. Files given are read, or the call fails: another named
    source with files is refused, and a missing file is an error that names it. Caps take seeded random
    subsets; val_fraction carves validation out of train after capping. Bad-row errors name the file's
    1-based line.
    """
    _check_choice("source", source, SOURCES)
    _check_choice("bad_rows", bad_rows, BAD_ROW_POLICIES)
    _check_cap("max_train_rows", max_train_rows)
    _check_cap("max_test_rows", max_test_rows)
    _check_fraction(val_fraction)
    # A single path is one file, not a sequence of characters; None means no files.
    train_files = [train_files] if isinstance(train_files, (str, os.PathLike)) else list(train_files or ())
    given = [*train_files, *([test_file] if test_file else [])]
    if given and source not in ("auto", "files"):  # a file the run would silently ignore
        raise DataError(f"--data {source} reads no files, but {' and '.join(map(str, given))} given: drop "
                        f"--train-file/--test-file, or pass --data files to train on them.")

    if source == "files" or (source == "auto" and (train_files or test_file)):
        train, test, where = _load_files(train_files, test_file, bad_rows, log)
    elif source == "kaggle":
        train, test, where = _load_kaggle(_find_kaggle_dir(kaggle_root, required=True), bad_rows, log)
    elif source == "hub":
        train, test, where = _load_hub()
    else:  # "synthetic", or "auto" when no real source is available
        real = _load_auto_real(kaggle_root, bad_rows, log) if source == "auto" else None
        train, test, where = real or _load_synthetic(synthetic_train_size, synthetic_test_size, seed)

    train = _cap(train, max_train_rows, seed, log)
    test = _cap(test, max_test_rows, seed, log)
    train, validation = _carve_validation(train, val_fraction, seed)
    n_val = len(validation) if validation else 0
    log(f"data: {where} | train {len(train)}, validation {n_val}, test {len(test)}")
    return NewsData(train=train, test=test, validation=validation, source=where)


def _load_auto_real(kaggle_root, bad_rows, log):
    """Load Kaggle input, the local AG News folder or the hub if available; else say loudly that data is synthetic."""
    folder = _find_kaggle_dir(kaggle_root, required=False)
    if folder is not None:
        return _load_kaggle(folder, bad_rows, log)
    local = local_dataset_dir()
    if local is not None:
        train_files, test_file = local_dataset_files(local)
        train, test, _ = _load_files(train_files, test_file, bad_rows, log)
        return train, test, f"local: {local} ({', '.join(p.name for p in train_files)} train, test.csv test)"
    loaded, why = _try_hub()
    if loaded is not None:
        return loaded
    log(f"auto: no --train-file/--test-file, no AG News folder under {kaggle_root} or in ${LOCAL_DATA_ENV}, "
        f"{why}; using SYNTHETIC data: numbers mean nothing about AG News")
    return None


def local_dataset_dir() -> Path | None:
    """A folder of real AG News CSVs on this machine, or None: the one $DISTRINEWS_AG_NEWS names, else
    ../shared/realdata/ag_news beside a checkout of this repository (where the course's CI keeps real rows)."""
    named = os.environ.get(LOCAL_DATA_ENV, "").strip()
    candidates = [Path(named)] if named else []
    if (CHECKOUT_ROOT / "lib" / "distrinews").is_dir():  # an installed wheel has no repository beside it
        candidates.append(CHECKOUT_ROOT.parent / "shared" / "realdata" / "ag_news")
    return next((folder for folder in candidates if local_dataset_files(folder)), None)


def local_dataset_files(folder) -> tuple[list[Path], Path] | None:
    """(train CSVs, test CSV) of an AG News folder: test.csv, and train.csv when present, else every other CSV
    (the shared folder's train_subset_2000.csv and valid_subset_2000.csv, both rows of AG News's train split)."""
    folder = Path(folder)
    test = folder / "test.csv"
    if not test.is_file():
        return None
    train = [folder / "train.csv"] if (folder / "train.csv").is_file() else sorted(
        path for path in folder.glob("*.csv") if path.name != "test.csv")
    return (train, test) if train else None


def count_rows(paths) -> int:
    """Data rows in AG News CSVs (either form), counted without keeping the texts."""
    return sum(len(_read_rows(Path(path), "skip")[1]) for path in paths)


def _load_files(train_files: list, test_file, bad_rows: str, log):
    """Concatenate the train files in order and read the test file."""
    if not train_files:
        raise DataError("no training file given; pass --train-file PATH (one or more CSVs).")
    if not test_file:
        raise DataError("no test file given; pass --test-file PATH (e.g. AG News test.csv).")
    for path in [*train_files, test_file]:  # all of them before reading any: a typo fails in a second
        _check_file(Path(path))
    texts, labels = [], []
    for path in train_files:
        more_texts, more_labels = _read_logged(Path(path), bad_rows, log)
        texts += more_texts
        labels += more_labels
    test = _make_split("test", *_read_logged(Path(test_file), bad_rows, log))
    names = " + ".join(str(path) for path in train_files)
    return _make_split("train", texts, labels), test, f"files: {names} (train), {test_file} (test)"


def _read_logged(path: Path, bad_rows: str, log) -> tuple[list[str], list[int]]:
    """Read one CSV, log any skipped rows, and insist that something usable is left."""
    texts, labels, problems = _read_rows(path, bad_rows)
    if problems:
        log(f"skipped {len(problems)} bad rows in {path} (first: {problems[0]})")
    if not texts:
        raise DataError(f"{path} has no usable data rows; {_EXPECTED_FILES}.")
    return texts, labels


def kaggle_dataset_dir(kaggle_root="/kaggle/input") -> Path | None:
    """The attached AG News Kaggle dataset's folder, or None when none is attached (or this is not Kaggle)."""
    return _find_kaggle_dir(kaggle_root, required=False)


def _find_kaggle_dir(kaggle_root, required: bool) -> Path | None:
    """Find a folder holding train.csv and test.csv at root/<slug> or root/datasets/<owner>/<slug>."""
    root = Path(kaggle_root)
    patterns = ("*", "datasets/*/*")
    found = sorted(folder for pattern in patterns for folder in root.glob(pattern)
                   if (folder / "train.csv").is_file() and (folder / "test.csv").is_file())
    # Several datasets may be attached; the one named like AG News is most likely meant.
    preferred = [f for f in found if "ag" in f.name.lower() and "news" in f.name.lower()]
    if preferred or found:
        return (preferred or found)[0]
    if required:
        looked = ", ".join(str(root / p) for p in ("<slug>", "datasets/<owner>/<slug>"))
        raise DataError(f"no Kaggle AG News input found: looked for train.csv + test.csv in {looked}"
                        f"{'' if root.is_dir() else f' ({root} does not exist)'}. {_KAGGLE_FIX}")
    return None


def _load_kaggle(folder: Path, bad_rows: str, log):
    """Read the original-form train.csv and test.csv of an attached Kaggle dataset."""
    train = _make_split("train", *_read_logged(folder / "train.csv", bad_rows, log))
    test = _make_split("test", *_read_logged(folder / "test.csv", bad_rows, log))
    return train, test, f"kaggle: {folder}/train.csv (train), {folder}/test.csv (test)"


def _load_hub():
    """Download AG News from the hub, or raise DataError saying why not and what to do."""
    loaded, why = _try_hub()
    if loaded is None:
        raise DataError(f"could not load {HUB_DATASET} from the Hugging Face hub: {why}. {_HUB_FIX}")
    return loaded


def offline_variable() -> str | None:
    """The Hugging Face offline switch set in the environment (HF_HUB_OFFLINE=1, ...), or None."""
    return next((var for var in OFFLINE_VARS
                 if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")), None)


def _try_hub():
    """Return (loaded splits, None), or (None, a one-line reason the hub was not used)."""
    var = offline_variable()
    if var:
        return None, f"hub not tried because {var}={os.environ[var]} (offline mode)"
    try:
        import datasets  # slow to import and only needed here

        hub = datasets.load_dataset(HUB_DATASET)
        splits = [_make_split(name, [str(t) for t in hub[name]["text"]],
                              [int(label) for label in hub[name]["label"]]) for name in ("train", "test")]
    except Exception as error:  # offline, DNS, auth, missing package: all mean "not reachable"
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        return None, f"hub unreachable ({type(error).__name__}: {first_line})"
    return (*splits, f"hub: {HUB_DATASET} (train, test)"), None


def _load_synthetic(train_size: int, test_size: int, seed: int):
    """Generate synthetic news; the test set uses seed + 1 so it is different data."""
    from .synthetic import generate_news

    train = _make_split("train", *generate_news(train_size, seed))
    test = _make_split("test", *generate_news(test_size, seed + 1))
    where = f"synthetic (NOT AG News): {train_size} train seed {seed}, {test_size} test seed {seed + 1}"
    return train, test, where


# ---- shaping splits --------------------------------------------------------------------------


def _make_split(name: str, texts, labels) -> NewsSplit:
    """Freeze texts and labels into a NewsSplit."""
    return NewsSplit(name=name, texts=tuple(texts), labels=tuple(labels))


def _subset(split: NewsSplit, indices, name: str) -> NewsSplit:
    """Keep the rows at `indices`, in file order."""
    keep = sorted(indices)
    return _make_split(name, [split.texts[i] for i in keep], [split.labels[i] for i in keep])


def _cap(split: NewsSplit, limit: int | None, seed: int, log) -> NewsSplit:
    """Take a seeded random subset of at most `limit` rows (class balance is not enforced)."""
    if limit is None or len(split) <= limit:
        return split
    log(f"capped {split.name} from {len(split)} to {limit} rows")
    return _subset(split, random.Random(seed).sample(range(len(split)), limit), split.name)


def _carve_validation(train: NewsSplit, fraction: float, seed: int):
    """Split a seeded random `fraction` of train off as validation; 0 means no validation."""
    if fraction == 0:
        return train, None
    if len(train) < 2:
        raise DataError(f"val_fraction={fraction} needs at least 2 training rows, got {len(train)}.")
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    # Both parts keep at least one row so neither split is silently empty.
    n_val = min(max(1, round(len(train) * fraction)), len(train) - 1)
    return _subset(train, order[n_val:], "train"), _subset(train, order[:n_val], "validation")


def _check_choice(what: str, value, choices: tuple[str, ...]) -> None:
    """Reject a value that is not one of the allowed choices."""
    if value not in choices:
        raise DataError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}.")


def _check_fraction(value) -> None:
    """Accept a validation fraction in [0, 1); 1 would leave nothing to train on."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise DataError(f"val_fraction must be a number in [0, 1), got {value!r}.")


def _check_cap(what: str, value) -> None:
    """Accept None (no cap) or a positive int."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DataError(f"{what} must be a positive integer or None, got {value!r}.")


def describe(split: NewsSplit) -> dict[str, int]:
    """Count rows per label name, in label order."""
    counts = Counter(split.labels)
    return {name: counts[i] for i, name in enumerate(LABEL_NAMES)}
