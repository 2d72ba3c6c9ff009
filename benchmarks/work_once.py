"""Work done once and less data on purpose, measured within one run on mnist5k.

Three studies, each comparing settings inside one process (one torch thread), so their
energies are comparable with each other (a CPU-time estimate where no counter is readable):

- ``targets``: the class-incremental stream (5 tasks, conv4, 20 exemplars per class, as
  ``siamcl bench cl``) with distillation targets toward the previous encoder computed once
  per row (``teacher_targets="cached"``) or on every step (``"per_step"``), at 1 and 3
  epochs a task; the configurations alternate within each seed.
- ``compress``: per family (Siamese, softmax) an fp32 conv4 teacher, then the conv4-small
  KD and quantized-KD (int8 QAT) students of ``siamcl bench compress`` with cached and
  per-step teacher targets.

The two target modes swap order on odd seeds, so neither always pays a process's warm-up.
- ``selection``: one task holding all 10 classes, the Siamese learner at ``data_fraction``
  1, 0.5 and 0.25, stratified and coreset, epochs fixed.
- ``neighbours``: the Siamese learner and the standard network (6 epochs, one task of all
  classes), each epoch scored by the learner's own rule and by stores over every training
  image's features (whitened class means, whitened k-means centres, 1-nearest-neighbour
  search): whether a richer store helps only metric training.
- ``teacher_loss``: the conv4-small student of ``siamcl bench energy`` (10 epochs, cached
  targets, undistorted batches) distilled from a 6-epoch Siamese conv4 teacher with each
  ``teacher_loss``, and the same network trained alone.

    python benchmarks/work_once.py targets selection compress teacher_loss neighbours
        [--seeds 0,1,2] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from siamcl import IncrementalClassifier
from siamcl.allocator import retain_unless_disabled
from siamcl.bench.energy_scoring import logit_scorer, prototype_scorer
from siamcl.bench.variants import WHITENING_SHRINKAGE
from siamcl.data import class_incremental, load_dataset
from siamcl.learners.softmax import SoftmaxClassifier
from siamcl.preprocess import Preprocessor
from siamcl.reporting import DEFAULT_OUT, markdown_table, run_record, write_results
from siamcl.store import PrototypeStore

MODES = ("cached", "per_step")


def study_targets(data: tuple, seed: int) -> list[dict[str, Any]]:
    """The class-incremental stream, cached vs per-step targets, 1 and 3 epochs a task."""
    X, y, X_test, y_test = data
    rows = []
    for epochs in (1, 3):
        for mode in MODES if seed % 2 == 0 else MODES[::-1]:  # neither always runs first
            clf = IncrementalClassifier(
                encoder="conv4", epochs=epochs, memory_per_class=20, seed=seed,
                teacher_targets=mode,
            )  # fmt: skip
            reports = [clf.fit_task(t.X, t.y) for t in class_incremental(X, y, 5, seed=seed)]
            rows.append(_row("targets", seed, clf.score(X_test, y_test), reports,
                             epochs=epochs, mode=mode))  # fmt: skip
    return rows


def study_compress(data: tuple, seed: int) -> list[dict[str, Any]]:
    """Per family, one fp32 teacher and its KD / quantized-KD students, cached vs per-step."""
    X, y, X_test, y_test = data
    rows = []
    for family, make in (("siamese", IncrementalClassifier), ("softmax", SoftmaxClassifier)):
        teacher = make(encoder="conv4", epochs=3, memory_per_class=0, seed=seed)
        report = teacher.fit_task(X, y)
        rows.append(_row("compress", seed, teacher.score(X_test, y_test), [report],
                         family=family, variant="fp32 teacher", mode="-"))  # fmt: skip
        for variant, qat in (("KD student", None), ("quantized-KD student", "int8")):
            for mode in MODES if seed % 2 == 0 else MODES[::-1]:
                student = make(
                    encoder="conv4-small", qat=qat, teacher=teacher, epochs=6, lr=3e-3,
                    memory_per_class=0, seed=seed, teacher_targets=mode,
                )  # fmt: skip
                report = student.fit_task(X, y)
                rows.append(_row("compress", seed, student.score(X_test, y_test), [report],
                                 family=family, variant=variant, mode=mode))  # fmt: skip
    return rows


def study_selection(data: tuple, seed: int, epochs: int = 4) -> list[dict[str, Any]]:
    """One task of all classes at data_fraction 1, 0.5, 0.25 (stratified and coreset)."""
    X, y, X_test, y_test = data
    rows = []
    for fraction in (1.0, 0.5, 0.25):
        for method in ("stratified", "coreset") if fraction < 1 else ("stratified",):
            clf = IncrementalClassifier(
                encoder="conv4", epochs=epochs, memory_per_class=20, seed=seed,
                data_fraction=fraction, data_selection=method,
            )  # fmt: skip
            report = clf.fit_task(X, y)
            rows.append(_row("selection", seed, clf.score(X_test, y_test), [report],
                             fraction=fraction, method=method if fraction < 1 else "all",
                             rows_trained=int(report.extra["rows_trained"])))  # fmt: skip
    return rows


def study_teacher_loss(data: tuple, seed: int) -> list[dict[str, Any]]:
    """conv4-small from a Siamese teacher with each ``teacher_loss``, and alone."""
    X, y, X_test, y_test = data
    teacher = IncrementalClassifier(encoder="conv4", epochs=6, memory_per_class=0, seed=seed)
    report = teacher.fit_task(X, y)
    rows = [_row("teacher_loss", seed, teacher.score(X_test, y_test), [report],
                 variant="fp32 teacher (conv4)", teacher_loss="-")]  # fmt: skip
    student = {"encoder": "conv4-small", "epochs": 10, "lr": 3e-3, "augment": False,
               "memory_per_class": 0, "seed": seed}  # fmt: skip
    losses = ("match", "relational", "match+relational")
    for loss in losses if seed % 2 == 0 else losses[::-1]:
        clf = IncrementalClassifier(**student, teacher=teacher.encoder_,
                                    teacher_targets="cached", teacher_loss=loss)  # fmt: skip
        report = clf.fit_task(X, y)
        rows.append(_row("teacher_loss", seed, clf.score(X_test, y_test), [report],
                         variant="KD student (conv4-small)", teacher_loss=loss))  # fmt: skip
    clf = IncrementalClassifier(**student)
    report = clf.fit_task(X, y)
    rows.append(_row("teacher_loss", seed, clf.score(X_test, y_test), [report],
                     variant="conv4-small alone", teacher_loss="-"))  # fmt: skip
    return rows


KMEANS_PER_CLASS = 5  # the "-k5" rows of siamcl bench energy


class NeighbourMonitor:
    """After every epoch, test accuracy of the learner's own rule and of stores over every
    training image's features (the Siamese encoder's embedding, the softmax network's
    backbone output): whitened class means, whitened k-means centres (5 a class) and
    1-nearest-neighbour search, scored as ``siamcl bench energy``'s monitor scores them;
    time spent here is not training."""

    def __init__(self, family: str, data: tuple, seed: int):
        X, y, X_test, y_test = data
        preprocessor = Preprocessor().fit(X)  # as the learners fit theirs
        if family == "siamese":
            self.rule = prototype_scorer(preprocessor, (X, y), (X_test, y_test))
        else:
            self.rule = logit_scorer(preprocessor, np.unique(y), (X_test, y_test))
        per_class = int(np.unique(y, return_counts=True)[1].max())
        stores = {
            "whitened": (PrototypeStore, WHITENING_SHRINKAGE),
            "kmeans": (partial(PrototypeStore, prototypes_per_class=KMEANS_PER_CLASS, seed=seed),
                       WHITENING_SHRINKAGE),
            "nearest": (partial(PrototypeStore, prototypes_per_class=per_class), None),
        }  # fmt: skip
        self.stores = {
            name: prototype_scorer(preprocessor, (X, y), (X_test, y_test), "cpu", store, white)
            for name, (store, white) in stores.items()
        }
        self.family, self.seed, self.rows = family, seed, []

    def on_epoch_end(self, model: Any, progress: Any) -> None:
        features = model if self.family == "siamese" else model.backbone
        scores = {name: score(features)[0] for name, score in self.stores.items()}
        self.rows.append({"study": "neighbours", "seed": self.seed, "family": self.family,
                          "epoch": progress.epochs, "rule": self.rule(model)[0], **scores})  # fmt: skip


def study_neighbours(data: tuple, seed: int) -> list[dict[str, Any]]:
    """The Siamese learner and the standard network, 6 epochs on all of mnist5k: each
    epoch's accuracy by its own rule and by each store of :class:`NeighbourMonitor`."""
    X, y = data[0], data[1]
    rows = []
    for family, make in (("siamese", IncrementalClassifier), ("softmax", SoftmaxClassifier)):
        monitor = NeighbourMonitor(family, data, seed)
        learner = make(encoder="conv4", epochs=6, memory_per_class=0, seed=seed)
        learner.callbacks = [monitor]
        learner.fit_task(X, y)
        rows += monitor.rows
    return rows


STUDIES: dict[str, Callable[[tuple, int], list[dict[str, Any]]]] = {
    "targets": study_targets,
    "compress": study_compress,
    "selection": study_selection,
    "teacher_loss": study_teacher_loss,
    "neighbours": study_neighbours,
}
KEYS = {
    "targets": ("epochs", "mode"),
    "compress": ("family", "variant", "mode"),
    "selection": ("fraction", "method", "rows_trained"),
    "teacher_loss": ("variant", "teacher_loss"),
}


def _row(study: str, seed: int, accuracy: float, reports: list, **keys: Any) -> dict[str, Any]:
    return {
        "study": study,
        "seed": seed,
        **keys,
        "accuracy": float(accuracy),
        "energy_j": float(sum(r.energy_j for r in reports)),
        "cpu_s": float(sum(r.cpu_s for r in reports)),
    }


def summary(rows: list[dict[str, Any]], study: str) -> str:
    """Mean accuracy, energy and CPU seconds over seeds per configuration."""
    if study == "neighbours":
        return _neighbour_summary([r for r in rows if r["study"] == study])
    keys = KEYS[study]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if row["study"] == study:
            groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    table = []
    for key, group in groups.items():
        mean = {m: statistics.fmean(r[m] for r in group) for m in ("accuracy", "energy_j", "cpu_s")}
        spread = statistics.pstdev(r["accuracy"] for r in group) if len(group) > 1 else 0.0
        table.append([*key, f"{mean['accuracy']:.3f} ± {spread:.3f}", mean["energy_j"],
                      mean["cpu_s"], len(group)])  # fmt: skip
    headers = [*keys, "test accuracy", "train energy J", "train CPU s", "seeds"]
    return f"## {study}\n\n" + markdown_table(headers, table)


def _neighbour_summary(rows: list[dict[str, Any]]) -> str:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["family"], row["epoch"]), []).append(row)
    scores = [m for m in ("rule", "whitened", "kmeans", "nearest") if m in rows[0]]
    table = [[family, epoch, *(f"{statistics.fmean(r[m] for r in group):.4f}" for m in scores),
              len(group)]
             for (family, epoch), group in groups.items()]  # fmt: skip
    names = {"rule": "own rule (class means / logits)", "whitened": "whitened class means",
             "kmeans": f"whitened, {KMEANS_PER_CLASS} k-means a class", "nearest": "1-NN"}  # fmt: skip
    headers = ["family", "epoch", *(names[m] for m in scores), "seeds"]
    return "## neighbours\n\n" + markdown_table(headers, table)


def main() -> None:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", choices=sorted(STUDIES))
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (0)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"result folder ({DEFAULT_OUT})")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    record = run_record("work_once", seeds, studies=args.studies)  # the commit it started at
    data = load_dataset("mnist5k")
    rows = []
    for seed in seeds:
        for study in args.studies:
            rows.extend(STUDIES[study](data, seed))
            print(summary(rows, study), flush=True)
    results = {**record, "rows": rows}
    markdown = "# Work done once, less data on purpose (mnist5k)\n\n" + "\n\n".join(
        summary(rows, study) for study in args.studies
    )
    name = "work_once_" + "_".join(args.studies)
    write_results(args.out, name, results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
