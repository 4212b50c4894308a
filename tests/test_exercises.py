"""Every lecture's exercises: each check passes on its reference solution (notebooks/solutions/), refuses the
wrong answers listed beside it, and says "not attempted" to the untouched stub; every lecture has exercises,
and every check it calls exists and has a solution."""
import importlib
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "notebooks"))

from exercises import ExerciseFailed  # noqa: E402


def lecture_number(path):
    return path.name[:2]


def checks_of(number):
    """{answer name: check} of lecture ``number``'s exercises module."""
    module = importlib.import_module(f"exercises.lecture{number}")
    return {name[len("check_"):]: check for name, check in vars(module).items()
            if name.startswith("check_") and hasattr(check, "title")}


def lectures_with_exercises():
    return [lecture_number(path) for path in NOTEBOOKS
            if (ROOT / "notebooks" / "exercises" / f"lecture{lecture_number(path)}.py").exists()]


CASES = [(number, answer) for number in lectures_with_exercises() for answer in checks_of(number)]


@pytest.mark.parametrize("number, answer", CASES, ids=[f"lecture{n}-{a}" for n, a in CASES])
def test_the_reference_solution_passes_and_the_wrong_answers_are_refused(number, answer, capsys):
    check = checks_of(number)[answer]
    solutions = importlib.import_module(f"solutions.lecture{number}")
    assert hasattr(solutions, answer), f"solutions/lecture{number}.py has no {answer}"
    assert check(getattr(solutions, answer)) is True
    assert "correct" in capsys.readouterr().out
    wrong = solutions.WRONG.get(answer, [])
    assert wrong, f"solutions/lecture{number}.py lists no wrong answer for {answer}: a check must be shown to fail"
    for bad in wrong:
        with pytest.raises(ExerciseFailed):
            check(bad)


@pytest.mark.parametrize("number, answer", CASES, ids=[f"lecture{n}-{a}" for n, a in CASES])
def test_an_untouched_stub_is_not_attempted_rather_than_wrong(number, answer, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError("your code here")

    check = checks_of(number)[answer]
    assert check(...) is False                   # a value left as ... (the stub of a value exercise)
    solution = getattr(importlib.import_module(f"solutions.lecture{number}"), answer)
    if callable(solution):                       # a function exercise's stub
        assert check(stub) is False
    assert capsys.readouterr().out.count("not attempted yet") == (2 if callable(solution) else 1)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_lecture_ends_with_exercises_whose_checks_exist(path):
    cells = json.loads(path.read_text())["cells"]
    headings = [i for i, cell in enumerate(cells) if cell["cell_type"] == "markdown"
                and re.match(r"#+ .*Exercises", "".join(cell["source"]))]
    assert headings, f"{path.name} has no Exercises section"
    code = "\n".join("".join(cell["source"]) for cell in cells[headings[-1]:] if cell["cell_type"] == "code")
    called = set(re.findall(r"\bcheck_(\w+)\(", code))
    checks = checks_of(lecture_number(path))
    assert len(called) >= 2, f"{path.name}: {len(called)} exercise check(s); a lecture has 2 to 4"
    assert called <= set(checks), f"{path.name} calls checks that exercises/lecture{lecture_number(path)}.py lacks"
    assert set(checks) <= called, f"{path.name} does not use every check of its exercises module"
