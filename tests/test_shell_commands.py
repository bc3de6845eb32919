"""A failed `!command` fails the notebook (course.setup), unless its cell says it expects the failure.

Runs real notebooks through nbclient, as tests/test_notebooks.py and `make site` do, so the check holds for the
IPython and nbclient the suite runs under (Kaggle's pins included: .ci/kaggle-check runs this file too).
"""

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from distrinews.site import execute_notebook

SETUP = "from distrinews import course\ncourse.setup()"


def run(tmp_path, *cells: str):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in (SETUP, *cells)])
    path = tmp_path / "shell.ipynb"
    nbformat.write(nb, path)
    executed, _ = execute_notebook(path, tmp_path / "work", timeout=60)
    return ["".join(out.get("text", "") for out in cell.outputs) for cell in executed.cells]


def test_a_command_that_exits_1_fails_the_notebook_and_names_itself(tmp_path):
    with pytest.raises(CellExecutionError) as failure:
        run(tmp_path, "STATUS = 1", "!echo about to fail && exit {STATUS}", "print('never reached')")
    message = str(failure.value)
    assert "ShellCommandError" in message and "exit 1 exited with status 1" in message, message
    assert "never reached" not in message.split("Traceback")[0]


def test_a_failed_command_whose_stderr_went_to_a_file_shows_that_file(tmp_path):
    with pytest.raises(CellExecutionError) as failure:
        run(tmp_path, "!mkdir -p logs && (echo first line; echo the real reason >&2; exit 2) 2> logs/x.err")
    message = str(failure.value)
    assert "exited with status 2" in message and "from logs/x.err" in message, message
    assert "the real reason" in message, message


def test_successful_commands_and_expected_failures_run_on(tmp_path):
    outputs = run(
        tmp_path,
        "!echo fine\nprint('status', _exit_code)",
        "with course.expect_failure():\n    !exit 3\nprint('kept', _exit_code)",
        "def shout(word):\n    !echo {word.upper()}\nshout('local names expand')",  # IPython's frame depth kept
        "course.setup()  # a second call changes nothing\n!true",
    )
    assert "fine" in outputs[1] and "status 0" in outputs[1]
    assert "kept 3" in outputs[2]
    assert "LOCAL NAMES EXPAND" in outputs[3]


def test_an_expected_failure_that_does_not_happen_fails_the_notebook(tmp_path):
    with pytest.raises(CellExecutionError, match="expected a command to fail"):
        run(tmp_path, "with course.expect_failure():\n    !true")
