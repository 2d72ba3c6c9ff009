"""Checkpoints of a task stream, so that a crash or a kill costs at most the task in progress.

:meth:`IncrementalClassifier.fit_stream` with a ``checkpoint_dir`` saves the classifier after
every task and, run again with the same directory, resumes after the last finished task.
Layout of a checkpoint directory::

    task-00003/              the state after the stream's third task
        classifier/          the classifier, as IncrementalClassifier.save writes it
        progress.json        tasks done, a fingerprint of each, parameters, checksum of the save
    .task-00004.tmp-XXXX/    only while the next state is being written

Each state is written under a temporary name, flushed to disk and renamed into place in one
step; only then is the previous state deleted. A kill at any moment therefore leaves at least
one complete state, and the highest-numbered one is the latest.

Training is a deterministic function of the seed, the task index and the data, so resuming
from task ``k`` gives the same final model as a run that was never interrupted. Each task's
data is fingerprinted (sha256), and resuming with a stream whose finished tasks differ, or with
different learning parameters, is refused rather than silently mixing two experiments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from siamcl._atomic import atomic_directory, sha256_file, write_json
from siamcl.accounting import TaskReport
from siamcl.data.fingerprint import task_fingerprint
from siamcl.distributed import Ranks
from siamcl.persistence.classifier import FORMAT_NAME as CLASSIFIER_FORMAT
from siamcl.persistence.classifier import FORMAT_VERSION as CLASSIFIER_VERSION
from siamcl.persistence.classifier import MANIFEST, Learner, save_classifier, split_params
from siamcl.persistence.manifest import read_manifest, verify_files

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "StreamCheckpoint", "fit_stream", "task_fingerprint"]

FORMAT_NAME = "siamcl.StreamCheckpoint"
FORMAT_VERSION = 1
PROGRESS = "progress.json"
CLASSIFIER = "classifier"
_STATE = re.compile(r"task-(\d{5})")
# Parameters that change where or how verbosely a stream runs, not what it learns.
_RUNTIME_PARAMS = frozenset({"device", "progress", "energy", "flops"})


class StreamCheckpoint:
    """The checkpoint directory of one task stream (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def states(self) -> list[Path]:
        """The complete states, oldest first (empty when the stream has not finished a task)."""
        if not self.directory.exists():
            return []
        if not self.directory.is_dir():
            raise ValueError(f"checkpoint {self.directory} is a file, not a directory")
        states, foreign = [], []
        for entry in self.directory.iterdir():
            if _STATE.fullmatch(entry.name) and entry.is_dir():
                states.append(entry)
            elif not entry.name.startswith("."):
                foreign.append(entry.name)
        if foreign:
            raise ValueError(
                f"{self.directory} is not a siamcl stream checkpoint: it holds "
                f"{sorted(foreign)[:5]}; give fit_stream an empty or new directory"
            )
        return sorted(states, key=lambda p: p.name)

    def latest(self) -> Path | None:
        """The newest state, or None when the stream has not finished a task yet."""
        states = self.states()
        return states[-1] if states else None

    def read(
        self, learner: type, objects: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], Any] | None:
        """The newest readable progress record and classifier (rebuilt by ``learner.load``),
        verified; None if there is none yet. A corrupt newest state falls back to the one
        before it, with a warning; when none is readable, the newest state's error is raised."""
        states = self.states()
        errors = []
        for state in reversed(states):
            try:
                saved = _read_state(state, learner, objects or {})
            except ValueError as error:
                errors.append(error)
                continue
            if errors:
                warnings.warn(
                    f"checkpoint {states[-1]} is unreadable ({errors[0]}); resuming from "
                    f"{state.name}",
                    stacklevel=3,
                )
            return saved
        if errors:
            raise errors[0]
        return None

    def write(self, clf: Learner, tasks: list[dict[str, Any]], reports_before: int) -> Path:
        """Save ``clf`` as the state after ``len(tasks)`` tasks and verify it; then drop the
        states before the previous one (kept as a fallback should the newest be damaged)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"task-{len(tasks):05d}"
        # a state of that name can only be left by a run that was later refused
        with atomic_directory(final) as staging:
            save_classifier(clf, staging / CLASSIFIER)
            progress = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "tasks_done": len(tasks),
                "tasks": tasks,
                "reports_before": reports_before,
                "params": _plain_params(clf),
                "classifier_sha256": sha256_file(staging / CLASSIFIER / MANIFEST),
            }
            write_json(staging / PROGRESS, progress)
        _verify_state(final)
        states = self.states()
        for stale in states[: max(0, states.index(final) - 1)]:
            shutil.rmtree(stale, ignore_errors=True)  # the state before the newest is kept
        for entry in self.directory.iterdir():
            # staging and set-aside directories of earlier, interrupted writes
            if entry.name.startswith(".task-") and (".tmp-" in entry.name or ".old-" in entry.name):
                shutil.rmtree(entry, ignore_errors=True)
        return final


def fit_stream(
    clf: Learner,
    tasks: Iterable[Any],
    directory: str | os.PathLike,
    after_task: Callable[[int, Learner], None] | None = None,
) -> list[TaskReport]:
    """Learn each task in turn, checkpointing after each; resume from ``directory`` if it holds
    a checkpoint of the same stream. Returns the stream's reports, finished tasks included.

    ``after_task(index, clf)`` is called whenever ``clf`` holds the state after task
    ``index``: once that task is trained and saved, and once its state is restored from the
    checkpoint (so a caller can evaluate every state it has not seen yet).

    The finished tasks of a resumed stream are fingerprinted, not trained; the classifier's
    learned state is replaced by the checkpoint's only once they all match, so a refused
    resume changes nothing. Under torch.distributed only rank 0 writes, and the others wait
    for it, so ``directory`` must be one that every rank can read.
    """
    checkpoint = StreamCheckpoint(directory)
    ranks = Ranks.current(clf.device)
    saved = checkpoint.read(type(clf), _object_params(clf))
    done, finished, reports_before, restored = 0, [], len(clf.reports), None
    if saved is not None:
        progress, restored = saved
        _check_same_params(progress["params"], _plain_params(clf), checkpoint.directory)
        done, finished, reports_before = (
            progress["tasks_done"],
            progress["tasks"],
            progress["reports_before"],
        )
    record: list[dict[str, Any]] = []
    for index, task in enumerate(tasks):
        entry = {"fingerprint": task_fingerprint(task.X, task.y), "samples": len(task.y)}
        if index < done:
            if entry["fingerprint"] != finished[index]["fingerprint"]:
                raise ValueError(
                    f"task {index} of this stream differs from task {index} of the checkpoint "
                    f"in {checkpoint.directory}: resume with the same tasks, or use a new "
                    f"checkpoint directory"
                )
            record.append(entry)
            continue
        if restored is not None:
            _adopt(clf, restored, done, after_task)
            restored = None
        clf.fit_task(task.X, task.y)
        record.append(entry)
        if ranks.rank == 0:  # under torch.distributed every rank holds the same state
            checkpoint.write(clf, record, reports_before)
        ranks.barrier()
        if after_task is not None:
            after_task(index, clf)
    if len(record) < done:
        raise ValueError(
            f"the checkpoint in {checkpoint.directory} has {done} finished tasks but this "
            f"stream has only {len(record)}"
        )
    if restored is not None:  # every task was already finished
        _adopt(clf, restored, done, after_task)
    return clf.reports[reports_before:]


def _adopt(
    clf: Learner,
    restored: Learner,
    done: int,
    after_task: Callable[[int, Learner], None] | None,
) -> None:
    clf.adopt(restored)
    clf.encoder_.to(torch.device(clf.device))
    if after_task is not None:
        after_task(done - 1, clf)


def _object_params(clf: Learner) -> dict[str, Any]:
    """The learner's own object parameters: a resumed stream takes them from the learner
    given, never by unpickling the checkpoint."""
    params = clf.get_params(deep=False)
    params["teacher"] = None
    return split_params(params)[1]


def _plain_params(clf: Learner) -> dict[str, Any]:
    """Learning parameters that JSON can hold, stopping policies included (objects such as
    user modules are left out): a stream resumes only with the same ones."""
    data, _ = split_params(clf.get_params(deep=False))
    return {name: value for name, value in data.items() if name not in _RUNTIME_PARAMS}


def _check_same_params(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    if changed:
        details = ", ".join(f"{k}={saved.get(k)!r} there, {current.get(k)!r} here" for k in changed)
        raise ValueError(
            f"the checkpoint in {where} was written with other parameters ({details}): resume "
            f"with the same parameters, or use a new checkpoint directory"
        )


def _read_progress(state: Path) -> dict[str, Any]:
    path = state / PROGRESS
    if not path.is_file():
        raise ValueError(f"checkpoint {state} is incomplete: {PROGRESS} is missing")
    try:
        progress = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"checkpoint {path} is corrupt: {error}") from error
    if not isinstance(progress, dict) or progress.get("format") != FORMAT_NAME:
        raise ValueError(f"{state} was written by another tool, not as {FORMAT_NAME}")
    version = progress.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {state} has format version {version}; this siamcl reads version "
            f"{FORMAT_VERSION}"
        )
    tasks = progress.get("tasks")
    valid = (
        isinstance(tasks, list)
        and progress.get("tasks_done") == len(tasks) == int(state.name[len("task-") :])
        and all(isinstance(t, dict) and isinstance(t.get("fingerprint"), str) for t in tasks)
        and isinstance(progress.get("reports_before"), int)
        and isinstance(progress.get("params"), dict)
        and isinstance(progress.get("classifier_sha256"), str)
    )
    if not valid:
        raise ValueError(f"checkpoint {path} is corrupt: its fields are missing or inconsistent")
    return progress


def _read_state(state: Path, learner: type, objects: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    progress = _read_progress(state)
    _check_classifier_matches(state, progress)
    return progress, learner.load(state / CLASSIFIER, **objects)


def _verify_state(state: Path) -> None:
    """A state just written reads back: progress record, manifest and every file's checksum."""
    try:
        progress = _read_progress(state)
        _check_classifier_matches(state, progress)
        classifier = state / CLASSIFIER
        verify_files(
            classifier, read_manifest(classifier, CLASSIFIER_FORMAT, (CLASSIFIER_VERSION,)), set()
        )
    except ValueError:
        shutil.rmtree(state, ignore_errors=True)
        raise


def _check_classifier_matches(state: Path, progress: dict[str, Any]) -> None:
    manifest = state / CLASSIFIER / MANIFEST
    if not manifest.is_file() or sha256_file(manifest) != progress["classifier_sha256"]:
        raise ValueError(
            f"checkpoint {state} is corrupt: its classifier does not match its progress record"
        )
