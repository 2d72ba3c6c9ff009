"""A save over an existing model, killed at any file-system step, leaves a loadable model.

The save runs in a forked child that exits abruptly (``os._exit``, as a kill would: no
exception handlers, no cleanup) before its k-th file-system call, for every k until a save
completes. After each, the target directory must load and predict as the old model or the
new one, never fail.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys

import numpy as np
import pytest

import siamcl._atomic as atomic
from siamcl import IncrementalClassifier

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _vectors(classes, seed):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(9).normal(size=(8, 12)) * 3
    y = np.repeat(np.asarray(classes), 15)
    return (centres[y] + rng.normal(size=(len(y), 12))).astype(np.float32), y


@pytest.fixture(scope="module")
def old_and_new():
    old = IncrementalClassifier(epochs=1, batch_size=16, embedding_dim=8, flops="off", seed=0)
    old.fit_task(*_vectors([0, 1], seed=0))
    new = copy.deepcopy(old)
    new.fit_task(*_vectors([2, 3], seed=1))
    probe, _ = _vectors([0, 1, 2, 3], seed=2)
    return old, new, probe


def _killed_save(clf, target, step: int, exchange: bool) -> bool:
    """Save ``clf`` over ``target`` in a child killed before its ``step``-th file-system call;
    True when the save finished first."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        try:
            calls = [0]

            def killing(function):
                def call(*args, **kwargs):
                    calls[0] += 1
                    if calls[0] == step:
                        os._exit(9)
                    return function(*args, **kwargs)

                return call

            os.rename = killing(os.rename)
            os.replace = killing(os.replace)
            os.fsync = killing(os.fsync)
            shutil.rmtree = killing(shutil.rmtree)
            exchange_function = atomic._exchange if exchange else (lambda first, second: False)
            atomic._exchange = killing(exchange_function)
            clf.save(target)
            os._exit(0)
        except BaseException:  # noqa: BLE001 - the child must never return to pytest
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_a_killed_save_leaves_the_old_or_the_new_model(old_and_new, tmp_path, exchange):
    old, new, probe = old_and_new
    answers = {"old": old.predict(probe).tolist(), "new": new.predict(probe).tolist()}
    seen = []
    for step in range(1, 200):
        target = tmp_path / f"step{step}" / "model"
        old.save(target)
        finished = _killed_save(new, target, step, exchange)
        loaded = IncrementalClassifier.load(target)  # must not fail, whatever the step
        predicted = loaded.predict(probe).tolist()
        assert predicted in answers.values(), f"step {step}: neither the old nor the new model"
        seen.append("new" if predicted == answers["new"] else "old")
        if finished:
            break
    else:
        pytest.fail("the save never finished")
    assert seen[0] == "old" and seen[-1] == "new"
    assert step > 5, "too few file-system steps were interrupted to mean anything"
    old.save(target)  # the next save removes what killed saves left behind
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]
