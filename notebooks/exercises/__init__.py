"""The checks of the lectures' exercises: one module per lecture (``exercises.lecture01``, ...).

Each check takes the student's answer — a function, or a value — and tells whether it is right, using the
library's own tools (the adjoint test, ``check_gradients``, the models' own parameter counts):

- right: prints "correct: <what was verified>" and returns True;
- not attempted yet (the stub still raises ``NotImplementedError``, or the value is still ``...``): prints
  so and returns False, so that a lecture with its exercises untouched still runs top to bottom;
- wrong: raises ``ExerciseFailed``, saying what is wrong (and, where it helps, what was expected).

The reference solutions are in ``notebooks/solutions/``; ``tests/test_exercises.py`` runs every check on
its solution (each must pass) and on the wrong answers listed beside it (each must be refused).
"""
import functools


class ExerciseFailed(AssertionError):
    """The answer is wrong; the message says how."""


def exercise(title):
    """Make ``check(answer, ...) -> detail`` a lecture's check: it returns True and prints the detail when the
    answer is right, prints and returns False when it is not attempted, and lets ExerciseFailed through."""
    def decorate(check):
        @functools.wraps(check)
        def run(answer, *args, **kwargs):
            if answer is Ellipsis:
                print(f"{title}: not attempted yet (replace the ... with your answer)")
                return False
            try:
                detail = check(answer, *args, **kwargs)
            except NotImplementedError:
                print(f"{title}: not attempted yet (the function still raises NotImplementedError)")
                return False
            print(f"{title}: correct" + (f" — {detail}" if detail else ""))
            return True
        run.title = title
        return run
    return decorate


def require(condition, message):
    """Raise ExerciseFailed(message) unless condition holds."""
    if not condition:
        raise ExerciseFailed(message)
