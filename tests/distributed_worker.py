"""A two-task stream on scikit-learn's digits, run alone or under torchrun by test_distributed.

With ``--mismatched`` rank 1 is given other data than rank 0 (training must refuse). Each
process writes ``rank<R>.json`` (accuracy, the last task's report) and
``rank<R>.npz`` (its store's prototypes and labels) under the folder given as argument.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from siamcl import IncrementalClassifier
from siamcl.data import class_incremental, load_dataset
from siamcl.distributed import Ranks


def main(out: Path, mismatched: bool = False) -> None:
    torch.set_num_threads(1)
    X_train, y_train, X_test, y_test = load_dataset("digits")
    if mismatched and Ranks.current().rank == 1:  # a rank given other data than rank 0
        X_train, y_train = X_train[1:], y_train[1:]
    clf = IncrementalClassifier(
        encoder="mlp",
        epochs=6,
        batch_size=64,
        memory_per_class=10,
        augment=False,
        flops="off",
        energy="estimate",
        seed=0,
    )
    tasks = class_incremental(X_train, y_train, n_tasks=2, seed=0)
    clf.fit_stream(tasks, checkpoint_dir=out / "checkpoint")  # rank 0 writes it
    rank = Ranks.current().rank
    (out / f"rank{rank}.json").write_text(
        json.dumps({"accuracy": clf.score(X_test, y_test), "report": clf.reports[-1].to_dict()})
    )
    store = clf.store_
    np.savez(out / f"rank{rank}.npz", prototypes=store.prototypes(), labels=store.prototype_labels)


if __name__ == "__main__":
    main(Path(sys.argv[1]), mismatched=sys.argv[2:] == ["--mismatched"])
