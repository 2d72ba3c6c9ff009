"""Predictions made while another thread learns come from one model, before or after a call."""

from __future__ import annotations

import copy
import threading

import numpy as np

from siamcl import IncrementalClassifier


def _vectors(classes, per_class, seed):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(7).normal(size=(10, 16)) * 2.5
    y = np.repeat(np.asarray(classes), per_class)
    return (centres[y] + rng.normal(size=(len(y), 16))).astype(np.float32), y


def test_eight_threads_predicting_while_learning_see_whole_models():
    clf = IncrementalClassifier(epochs=1, batch_size=16, embedding_dim=8, flops="off", seed=0)
    clf.fit_task(*_vectors([0, 1], 20, seed=0))
    probe, _ = _vectors(range(10), 5, seed=9)
    models = [copy.deepcopy(clf)]
    answers: list[tuple[int, ...] | str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def predict_until_stopped():
        while not stop.is_set():
            try:
                answer = tuple(clf.predict(probe).tolist())
            except ValueError as error:  # between reset_classes and add_classes
                assert "no classes are known" in str(error)
                answer = "no classes"
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=predict_until_stopped) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        for step in range(3):
            clf.fit_task(*_vectors([2 + 2 * step, 3 + 2 * step], 20, seed=step + 1))
            models.append(copy.deepcopy(clf))
            clf.add_classes(*_vectors([8 + step % 2], 3, seed=10 + step))
            models.append(copy.deepcopy(clf))
        clf.reset_classes()
        clf.add_classes(*_vectors([0, 5], 3, seed=20))
        models.append(copy.deepcopy(clf))
        while len(answers) * len(probe) < 2000:
            stop.wait(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    possible = {tuple(model.predict(probe).tolist()) for model in models} | {"no classes"}
    wrong = [answer for answer in answers if answer not in possible]
    assert len(answers) * len(probe) >= 2000
    assert not wrong, f"{len(wrong)} of {len(answers)} answers came from no whole model"
    assert len({a for a in answers if a != "no classes"}) >= 2  # the threads saw models change
