"""Declared parameter constraints: what passes, and the message of what does not."""

import numpy as np
import pytest

from siamcl._checks import Integer, Real, Satisfies, check_params


class Params:
    def __init__(self, **values):
        vars(self).update(values)


CONSTRAINTS = {
    "epochs": [Integer(1)],
    "lr": [Real(0, closed="neither")],
    "balance": [Real(0, 1)],
    "optimizer": [None, Satisfies(callable, "a callable")],
    "kind": [Satisfies(lambda v: isinstance(v, str), "a string", TypeError)],
}
GOOD = {"epochs": 3, "lr": 1e-3, "balance": 1, "optimizer": None, "kind": "a"}


def test_good_values_pass():
    check_params(Params(**GOOD), CONSTRAINTS)
    check_params(Params(**{**GOOD, "epochs": np.int64(2), "optimizer": print}), CONSTRAINTS)


@pytest.mark.parametrize(
    ("name", "value", "error", "message"),
    [
        ("epochs", 0, ValueError, "epochs must be a positive integer, got 0"),
        ("epochs", True, ValueError, "epochs must be a positive integer, got True"),
        ("epochs", 2.0, ValueError, "epochs must be a positive integer"),
        ("lr", 0.0, ValueError, "lr must be positive, got 0.0"),
        ("lr", float("nan"), ValueError, "lr must be positive"),
        ("lr", "fast", TypeError, "lr must be positive, got 'fast'"),
        ("balance", 1.5, ValueError, r"balance must be in \[0, 1\], got 1.5"),
        ("optimizer", "adam", ValueError, "optimizer must be None or a callable"),
        ("kind", 3, TypeError, "kind must be a string, got 3"),
    ],
)
def test_bad_values_name_the_parameter(name, value, error, message):
    with pytest.raises(error, match=message):
        check_params(Params(**{**GOOD, name: value}), CONSTRAINTS)
