"""siamcl inside Avalanche: a Siamese strategy, energy metrics for any strategy, stream conversion.

    from siamcl.integrations.avalanche import (
        SiameseStrategy, energy_metrics, from_avalanche, to_avalanche,
    )

    benchmark = to_avalanche(class_incremental(X, y, n_tasks=5), X_test, y_test)
    evaluator = EvaluationPlugin(
        accuracy_metrics(experience=True, stream=True),
        forgetting_metrics(experience=True, stream=True),
        *energy_metrics(),
        loggers=[InteractiveLogger()],
    )
    strategy = SiameseStrategy(encoder="conv4", input_shape=(1, 28, 28), evaluator=evaluator)
    for experience in benchmark.train_stream:
        strategy.train(experience)
        strategy.eval(benchmark.test_stream)

The strategy also runs on ``nc_benchmark`` and ``class_incremental_benchmark`` streams. The
pieces live in :mod:`~siamcl.integrations.avalanche_strategy` (with
:mod:`~siamcl.integrations.avalanche_model` and :mod:`~siamcl.integrations.avalanche_replay`),
:mod:`~siamcl.integrations.avalanche_metrics` and :mod:`~siamcl.integrations.avalanche_streams`;
:class:`FrozenLeadingLayers` (:mod:`~siamcl.integrations.avalanche_freezing`) trains any
strategy's later experiences above its backbone's first layers, and
:class:`PrototypeReadoutPlugin` (:mod:`~siamcl.integrations.avalanche_readout`) reads any
strategy's backbone out by (whitened) class means when it evaluates.
"""

from siamcl.integrations.avalanche_freezing import FrozenLeadingLayers
from siamcl.integrations.avalanche_metrics import TrainingCost, energy_metrics, retained_bytes
from siamcl.integrations.avalanche_readout import PrototypeReadoutPlugin
from siamcl.integrations.avalanche_strategy import (
    BalancedSampler,
    PrototypeModel,
    SiameseStrategy,
)
from siamcl.integrations.avalanche_streams import (
    LabelledTensors,
    PreprocessTransform,
    from_avalanche,
    to_avalanche,
)

__all__ = [
    "BalancedSampler",
    "FrozenLeadingLayers",
    "LabelledTensors",
    "PreprocessTransform",
    "PrototypeModel",
    "PrototypeReadoutPlugin",
    "SiameseStrategy",
    "TrainingCost",
    "energy_metrics",
    "from_avalanche",
    "retained_bytes",
    "to_avalanche",
]
