"""The methods ``siamcl bench cl`` compares, and how one of them runs on one seed's stream.

siamcl's ``IncrementalClassifier`` (and, for ``siamcl bench energy``, siamcl's standard network
with replay, ``SoftmaxClassifier``, scored by its head or read out by prototypes) runs directly
on the stream; every other row (the same learner as ``SiameseStrategy``, and Avalanche's
baselines) runs inside Avalanche on the same stream turned into an Avalanche benchmark, its
cost measured by ``TrainingCost``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from siamcl.accounting import sum_reports
from siamcl.bench.warm_up import freeze_survivors
from siamcl.evaluation import accuracy_matrix_metrics, evaluate_stream

__all__ = ["BASELINE_ROWS", "LABELS", "METHODS", "REFERENCE", "SIAMESE_ROWS", "StreamRunner"]

REFERENCE = "siamese"
SIAMESE_ROWS = ("siamese", "siamese-avalanche", "siamese-equal-epochs")
BASELINE_ROWS = (
    "naive",
    "replay",
    "der",
    "er_ace",
    "ewc",
    "lwf",
    "icarl",
    "gdumb",
    "slda",
    "joint",
)
METHODS = (*SIAMESE_ROWS, *BASELINE_ROWS)
LABELS = {
    "siamese": "Siamese (siamcl IncrementalClassifier)",
    "siamese-avalanche": "Siamese (SiameseStrategy in Avalanche)",
    "siamese-equal-epochs": "Siamese at the baselines' epochs (IncrementalClassifier)",
    "naive": "Naive (fine-tuning)",
    "replay": "Replay",
    "der": "DER++",
    "er_ace": "ER-ACE",
    "ewc": "EWC",
    "lwf": "LwF",
    "icarl": "iCaRL",
    "gdumb": "GDumb",
    "slda": "StreamingLDA",
    "joint": "Joint training (upper bound)",
    "standard": "Standard network with replay (siamcl SoftmaxClassifier)",
}


class StreamRunner:
    """One seed's stream and what every method run on it needs."""

    def __init__(
        self,
        args: Any,
        tasks: list[Any],
        X_test: np.ndarray,
        y_test: np.ndarray,
        seed: int,
        settings: dict[str, Any],
    ) -> None:
        self.args, self.tasks, self.seed, self.settings = args, tasks, seed, settings
        self.X_test, self.y_test = X_test, y_test
        self.n_classes = sum(len(task.classes) for task in tasks)

    @functools.cached_property
    def benchmark(self) -> Any:
        """The stream as an Avalanche benchmark, built only when an Avalanche row runs
        (Avalanche cannot be imported in the non-zero ranks of a ``--nproc`` run)."""
        from siamcl.integrations.avalanche_streams import to_avalanche

        return to_avalanche(self.tasks, self.X_test, self.y_test)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.benchmark.train_stream[0].dataset[0][0].shape)

    def run(self, name: str) -> dict[str, Any]:
        """Method ``name``'s result on this stream, or its error; with epochs and wall time."""
        freeze_survivors()  # earlier runs' objects out of this run's garbage collections
        start = time.perf_counter()
        try:
            if name in ("siamese", "siamese-equal-epochs"):
                result = self._incremental_classifier(name, self.settings["epochs"][name])
            elif name == "standard":
                result = self._standard_network(self.settings["epochs"][name])
            else:
                with _without_avalanche_chatter():
                    result = self._avalanche(name)
        except Exception as error:  # noqa: BLE001 - a failing baseline is a row with its error
            result = {"error": f"{type(error).__name__}: {error}"}
            result["traceback"] = traceback.format_exc(limit=6)
        result["epochs"] = self.settings["epochs"][name]
        result["run_wall_s"] = time.perf_counter() - start
        return result

    def _incremental_classifier(self, name: str, epochs: int) -> dict[str, Any]:
        from siamcl.learners.incremental import IncrementalClassifier

        parameters = {"encoder": "conv4", "batch_size": self.args.batch_size}
        learner = IncrementalClassifier(
            epochs=epochs,
            memory_per_class=self.args.memory,
            device=self.args.device,
            seed=self.seed,
            **{**parameters, **self.settings.get("siamese_options", {})},
        )
        checkpoint = (
            self.args.checkpoint and Path(self.args.checkpoint) / f"{name}-seed-{self.seed}"
        )
        result = evaluate_stream(
            learner, self.tasks, self.X_test, self.y_test, checkpoint_dir=checkpoint
        )
        result.pop("task_reports")
        return result

    def _standard_network(self, epochs: int) -> dict[str, Any]:
        """siamcl's standard network with replay (the same exemplar budget), scored by its
        head, or, with a readout option (``whitening``, ``prototypes_per_class``), by
        prototypes of its backbone's features after every task
        (:class:`~siamcl.learners.readout.PrototypeReadout`)."""
        from siamcl.learners.readout import PrototypeReadout, split_readout
        from siamcl.learners.softmax import SoftmaxClassifier

        trained, readout = split_readout(self.settings.get("standard_options", {}))
        memory = {"memory_per_class": self.args.memory}
        parameters = {"encoder": "conv4", "batch_size": self.args.batch_size, **memory}
        model = SoftmaxClassifier(
            epochs=epochs,
            device=self.args.device,
            seed=self.seed,
            **{**parameters, **trained},
        )
        # as the multi-class rows: whitened only with "-whitened" ("-k1": plain class means)
        readout = {**memory, "whitening": None, **readout} if readout else {}
        learner = PrototypeReadout(model, readout) if readout else model
        result = evaluate_stream(learner, self.tasks, self.X_test, self.y_test)
        result.pop("task_reports", None)  # the readouts' costs add up in the stream's report
        return result

    def _avalanche(self, name: str) -> dict[str, Any]:
        from avalanche.evaluation.metrics import accuracy_metrics
        from avalanche.training.plugins import EvaluationPlugin

        from siamcl.integrations.avalanche_metrics import TrainingCost

        torch.manual_seed(self.seed)
        cost = TrainingCost(device=self.args.device)
        evaluator = EvaluationPlugin(
            accuracy_metrics(experience=True, stream=True), cost, loggers=[]
        )
        strategy = self._strategy(name, evaluator)
        stream, test = self.benchmark.train_stream, self.benchmark.test_stream
        n = len(stream)
        rows = []
        if name == "joint":
            strategy.train(stream)
            metrics = strategy.eval(test)
        else:
            for experience in stream:
                strategy.train(experience)
                metrics = strategy.eval(test)
                rows.append([metrics[_accuracy_key(j)] for j in range(n)])
        accuracy = float(metrics["Top1_Acc_Stream/eval_phase/test_stream/Task000"])
        result: dict[str, Any] = {"accuracy": accuracy}
        if rows:
            result.update(accuracy_matrix_metrics(np.asarray(rows)))
            result["accuracy_matrix"] = rows
        else:
            result["final_accuracy"] = float(np.mean([metrics[_accuracy_key(j)] for j in range(n)]))
            result["forgetting"] = None
        result["report"] = sum_reports(cost.reports).to_dict()
        result["report"]["retained_bytes"] = dict(cost.reports[-1].retained_bytes)
        return result

    def _strategy(self, name: str, evaluator: Any) -> Any:
        from siamcl.integrations.avalanche_baselines import BaselineSettings, build_baseline
        from siamcl.integrations.avalanche_strategy import SiameseStrategy

        if name == "siamese-avalanche":
            return SiameseStrategy(
                encoder="conv4",
                input_shape=self.input_shape,
                memory_per_class=self.args.memory,
                train_epochs=self.settings["epochs"][name],
                train_mb_size=self.args.batch_size,
                device=self.args.device,
                seed=self.seed,
                evaluator=evaluator,
            )
        settings = BaselineSettings(
            input_shape=self.input_shape,
            n_classes=self.n_classes,
            n_experiences=len(self.tasks),
            epochs=self.settings["epochs"]["naive"],
            gdumb_epochs=self.settings["epochs"]["gdumb"],
            batch_size=self.args.batch_size,
            memory_total=self.args.memory * self.n_classes,
            device=self.args.device,
            seed=self.seed,
        )
        # a bench energy variant's own fields (precision, frozen layers, encoder, batch size)
        settings = dataclasses.replace(settings, **self.settings.get("baseline_options", {}))
        return build_baseline(name, settings, evaluator)


@contextlib.contextmanager
def _without_avalanche_chatter() -> Iterator[None]:
    """Run a block, then pass on its warnings except what Avalanche says on every run that is
    not news to a benchmark's reader: that no logger was given (the results are the logger)
    and its own deprecations. Filters cannot do this: Avalanche's deprecation decorator
    resets the filter for DeprecationWarning on every call, so the block records everything
    and the rest is warned again, once a process, even if the block fails."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        _pass_on(caught)


_PASSED_ON: set[tuple[Any, ...]] = set()  # warnings already passed on, once a place and text


def _pass_on(caught: list[warnings.WarningMessage]) -> None:
    for warning in caught:
        key = (warning.category, str(warning.message), warning.filename, warning.lineno)
        if _avalanche_chatter(warning) or key in _PASSED_ON:
            continue
        _PASSED_ON.add(key)
        warnings.warn_explicit(  # module left out: an explicit None silences it
            warning.message, warning.category, warning.filename, warning.lineno
        )


def _avalanche_chatter(warning: warnings.WarningMessage) -> bool:
    from_avalanche = f"{os.sep}avalanche{os.sep}" in warning.filename
    return (from_avalanche and issubclass(warning.category, DeprecationWarning)) or (
        "No loggers specified" in str(warning.message)
    )


def _accuracy_key(experience: int) -> str:
    return f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{experience:03d}"
