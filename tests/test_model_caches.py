"""Quantizing a network leaves nothing of it behind once the learner is gone.

torch's and torchao's ``functools.cache`` keyed by modules (siamcl.compress.model_caches) and
a strict re-export in the PT2E lowering kept every prepared and converted network alive for
the life of the process, so a long stream of quantized tasks grew without bound.
"""

import gc
import importlib

import pytest
import torch
from quick_settings import FAST

from siamcl import IncrementalClassifier
from siamcl.compress.model_caches import MODULE_KEYED_CACHES, release_model_caches


def live_graph_modules() -> int:
    gc.collect()
    return sum(isinstance(o, torch.fx.GraphModule) for o in gc.get_objects())


@pytest.mark.parametrize("qat", ["int8", "int8-pt2e"])
def test_quantized_learners_leave_no_network_behind(digits_40, qat):
    X, y = digits_40[0][:120], digits_40[1][:120]

    def fit_and_drop():
        clf = IncrementalClassifier(encoder="conv4-small", qat=qat, **{**FAST, "epochs": 1})
        clf.fit_task(X, y)
        assert clf.predict(X[:4]).shape == (4,)

    fit_and_drop()  # the first one fills the process's lasting caches (pattern exports)
    before = live_graph_modules()
    fit_and_drop()
    fit_and_drop()
    assert live_graph_modules() == before


def test_release_empties_every_loaded_cache():
    # loaded, as a quantizing run loads them
    cached = [getattr(importlib.import_module(m), name) for m, name in MODULE_KEYED_CACHES]
    network = torch.nn.Linear(2, 2)
    for function in cached:
        function(network)
        assert function.cache_info().currsize >= 1
    release_model_caches()
    assert [function.cache_info().currsize for function in cached] == [0] * len(cached)
