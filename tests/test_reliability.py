"""Reliability: resumable task streams, atomic and verified saves, concurrent predict."""

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from siamcl import IncrementalClassifier
from siamcl.data import Task, class_incremental, load_dataset
from siamcl.data.fingerprint import task_fingerprint
from siamcl.persistence import StreamCheckpoint
from siamcl.training import StepBudget

# ---------------------------------------------------------------- a stream killed with SIGKILL


def mnist_stream():
    """Five tasks of two digits, 16 small images a class, and a fixed probe set."""
    X_train, y_train, X_test, _ = load_dataset("mnist5k")
    rows = np.concatenate([np.flatnonzero(y_train == c)[:16] for c in range(10)])
    return class_incremental(X_train[rows], y_train[rows], n_tasks=5, seed=0), X_test[::10]


def image_classifier():
    return IncrementalClassifier(
        encoder="conv4-small",
        input_size=(12, 12),
        epochs=2,
        batch_size=16,
        memory_per_class=4,
        flops="off",
        energy="estimate",
        seed=3,
    )


def logging_training(log: list[int] | Path, stall_at: int | None = None):
    """``IncrementalClassifier._train`` that records each task it trains; at ``stall_at`` it
    writes a marker and sleeps after the gradient steps, before prototypes and checkpoint."""
    train = IncrementalClassifier._train

    def logged_train(self, *args, **kwargs):
        task = len([r for r in self.reports if r.method == "fit_task"])
        if isinstance(log, Path):
            with open(log, "a") as handle:
                handle.write(f"{task}\n")
        else:
            log.append(task)
        result = train(self, *args, **kwargs)
        if task == stall_at:
            (log.parent / "stalled").write_text(str(os.getpid()))
            time.sleep(300)
        return result

    return logged_train


def stream_job(work: Path) -> None:
    """Run in a forked process: the stream, checkpointed, stalling in task 3 until killed."""
    torch.set_num_threads(1)
    IncrementalClassifier._train = logging_training(work / "trained.log", stall_at=2)
    tasks, _ = mnist_stream()
    image_classifier().fit_stream(tasks, checkpoint_dir=work / "checkpoint")


def test_stream_killed_during_task_3_resumes_without_retraining(tmp_path, monkeypatch):
    job = multiprocessing.get_context("fork").Process(target=stream_job, args=(tmp_path,))
    job.start()
    deadline = time.monotonic() + 120
    while not (tmp_path / "stalled").exists():
        assert job.is_alive(), f"the job ended with exit code {job.exitcode}"
        assert time.monotonic() < deadline, "the job never reached task 3"
        time.sleep(0.02)
    os.kill(job.pid, signal.SIGKILL)
    job.join(timeout=60)
    assert job.exitcode == -signal.SIGKILL
    assert (tmp_path / "trained.log").read_text().split() == ["0", "1", "2"]
    checkpoint = StreamCheckpoint(tmp_path / "checkpoint")
    assert checkpoint.latest().name == "task-00002"  # tasks 1 and 2 were saved, task 3 was not
    saved = json.loads((checkpoint.latest() / "classifier" / "reports.json").read_text())

    trained: list[int] = []
    monkeypatch.setattr(IncrementalClassifier, "_train", logging_training(trained))
    tasks, probe = mnist_stream()
    resumed = image_classifier()
    reports = resumed.fit_stream(tasks, checkpoint_dir=tmp_path / "checkpoint")
    assert trained == [2, 3, 4]  # tasks 1-2 came from the checkpoint
    assert [r.task for r in reports] == [0, 1, 2, 3, 4]
    assert [r.to_dict() for r in reports[:2]] == saved  # the killed run's reports
    states = sorted(p.name for p in (tmp_path / "checkpoint").iterdir())
    assert states == ["task-00004", "task-00005"]  # the newest, and the one before as fallback

    uninterrupted = image_classifier()
    uninterrupted.fit_stream(tasks)
    assert np.array_equal(resumed.predict(probe), uninterrupted.predict(probe))
    assert np.array_equal(resumed.predict_proba(probe), uninterrupted.predict_proba(probe))


# ---------------------------------------------------------------- checkpoints, in process


def vector_stream(n_tasks=3, seed=0):
    """Tasks of two well-separated classes of 12-dimensional vectors each."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(2 * n_tasks, 12)) * 3
    tasks = []
    for index in range(n_tasks):
        classes = (2 * index, 2 * index + 1)
        y = np.repeat(classes, 20)
        X = (centres[y] + rng.normal(size=(len(y), 12))).astype(np.float32)
        tasks.append(Task(X=X, y=y, classes=classes, index=index))
    probe = (centres[np.arange(2 * n_tasks)] + rng.normal(size=(2 * n_tasks, 12))).astype(
        np.float32
    )
    return tasks, probe


def vector_classifier(**params):
    defaults = {"epochs": 2, "batch_size": 16, "embedding_dim": 8, "flops": "off", "seed": 1}
    return IncrementalClassifier(**{**defaults, **params})


def crash_after(tasks, n):
    """A stream that dies (as with Ctrl-C) when asked for task ``n``."""
    for index, task in enumerate(tasks):
        if index == n:
            raise KeyboardInterrupt
        yield task


def tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def interrupted(tmp_path):
    """A 3-task stream interrupted after task 2, and its checkpoint directory."""
    tasks, probe = vector_stream()
    with pytest.raises(KeyboardInterrupt):
        vector_classifier().fit_stream(crash_after(tasks, 2), checkpoint_dir=tmp_path / "ck")
    return tasks, probe, tmp_path / "ck"


def test_interrupted_stream_resumes_to_the_uninterrupted_model(interrupted, monkeypatch):
    tasks, probe, directory = interrupted
    trained: list[int] = []
    monkeypatch.setattr(IncrementalClassifier, "_train", logging_training(trained))
    resumed = vector_classifier()
    reports = resumed.fit_stream(iter(tasks), checkpoint_dir=directory)
    assert trained == [2] and [r.task for r in reports] == [0, 1, 2]
    again = vector_classifier()  # a finished stream trains nothing and ends where it was
    assert len(again.fit_stream(tasks, checkpoint_dir=directory)) == 3 and trained == [2]
    assert np.array_equal(again.predict_proba(probe), resumed.predict_proba(probe))

    uninterrupted = vector_classifier()
    uninterrupted.fit_stream(tasks)
    assert np.array_equal(resumed.embed(probe), uninterrupted.embed(probe))
    assert np.array_equal(resumed.predict(probe), uninterrupted.predict(probe))


@pytest.mark.parametrize(
    "change, message",
    [
        ("data", "task 1 of this stream differs"),
        ("labels", "task 0 of this stream differs"),
        ("params", r"other parameters \(epochs=2 there, 3 here\)"),
        ("stopping", r"other parameters \(stopping=None there, \[\{'policy': 'StepBudget'"),
        ("shorter", "has 2 finished tasks but this stream has only 1"),
    ],
)
def test_resuming_a_different_experiment_is_refused_and_changes_nothing(
    interrupted, change, message
):
    tasks, _, directory = interrupted
    before = tree(directory)
    clf = vector_classifier(epochs=3) if change == "params" else vector_classifier()
    if change == "stopping":  # policies change what training does: a new experiment
        clf.set_params(stopping=[StepBudget(100)])
    if change == "data":
        tasks[1].X[0, 0] += 1e-3
    elif change == "labels":
        tasks[0] = Task(X=tasks[0].X, y=tasks[0].y[::-1].copy(), classes=(0, 1), index=0)
    elif change == "shorter":
        tasks = tasks[:1]
    with pytest.raises(ValueError, match=message):
        clf.fit_stream(tasks, checkpoint_dir=directory)
    assert not clf.is_fitted and tree(directory) == before


def test_a_damaged_newest_state_falls_back_to_the_one_before(interrupted, tmp_path):
    tasks, probe, directory = interrupted
    encoder_file = directory / "task-00002" / "classifier" / "encoder.safetensors"
    encoder_file.write_bytes(encoder_file.read_bytes()[:-7])
    resumed = vector_classifier()
    with pytest.warns(UserWarning, match="task-00002 is unreadable.*resuming from task-00001"):
        resumed.fit_stream(tasks, checkpoint_dir=directory)
    uninterrupted = vector_classifier()
    uninterrupted.fit_stream(tasks)
    np.testing.assert_array_equal(resumed.predict(probe), uninterrupted.predict(probe))


def test_corrupt_or_foreign_checkpoints_are_refused(interrupted, tmp_path):
    tasks, _, directory = interrupted
    for older in directory.glob("task-00001"):  # no fallback: the newest state's errors show
        shutil.rmtree(older)
    state = directory / "task-00002"
    encoder_file = state / "classifier" / "encoder.safetensors"
    good = encoder_file.read_bytes()
    encoder_file.write_bytes(good[:-7])
    with pytest.raises(ValueError, match="checksum of encoder.safetensors"):
        vector_classifier().fit_stream(tasks, checkpoint_dir=directory)
    encoder_file.write_bytes(good)
    progress = state / "progress.json"
    record = json.loads(progress.read_text())
    progress.write_text(json.dumps({**record, "format_version": 7}))
    with pytest.raises(ValueError, match="format version 7"):
        vector_classifier().fit_stream(tasks, checkpoint_dir=directory)
    progress.write_text(json.dumps({**record, "tasks_done": 5}))
    with pytest.raises(ValueError, match="inconsistent"):
        vector_classifier().fit_stream(tasks, checkpoint_dir=directory)
    progress.write_text(json.dumps({**record, "classifier_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="does not match its progress record"):
        vector_classifier().fit_stream(tasks, checkpoint_dir=directory)
    progress.write_text('{"tasks_done": ')
    with pytest.raises(ValueError, match="corrupt"):
        vector_classifier().fit_stream(tasks, checkpoint_dir=directory)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a siamcl stream checkpoint"):
        vector_classifier().fit_stream(tasks, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="is a file"):
        vector_classifier().fit_stream(tasks, checkpoint_dir=tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_leftovers_of_a_kill_during_a_save_are_ignored_then_removed(interrupted):
    tasks, _, directory = interrupted
    shutil.copytree(directory / "task-00001", directory / "task-00000")  # old state not deleted
    (directory / ".task-00003.tmp-x1").mkdir()  # half-written next state
    (directory / ".task-00003.tmp-x1" / "progress.json").write_text("{")
    resumed = vector_classifier()
    resumed.fit_stream(tasks, checkpoint_dir=directory)
    assert sorted(p.name for p in directory.iterdir()) == ["task-00002", "task-00003"]
    assert len(resumed.reports) == 3


def test_fingerprints_depend_on_values_dtype_and_labels():
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.array([0, 0, 1, 1, 2, 2])
    base = task_fingerprint(X, y)
    assert task_fingerprint(torch.from_numpy(X), y.astype(np.int32)) == base
    assert task_fingerprint(X.astype(np.float64), y) != base
    assert task_fingerprint(X, y[::-1].copy()) != base
    assert task_fingerprint(X.reshape(6, 1, 2), y) != base


# ---------------------------------------------------------------- saves


@pytest.fixture(scope="module")
def fitted_vectors():
    tasks, probe = vector_stream(n_tasks=2)
    clf = vector_classifier()
    clf.fit_stream(tasks)
    return clf, probe


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: next((d / "store").iterdir()).unlink(), "incomplete"),
        (lambda d: _truncate(next(p for p in (d / "store").iterdir() if p.is_file())), "checksum"),
        (lambda d: _truncate(d / "memory.npz"), "checksum of memory.npz"),
        (lambda d: _truncate(d / "siamcl.json"), "corrupt"),
        (lambda d: _edit_manifest(d, files=None), "list of files"),
        (lambda d: _edit_manifest(d, files={"../outside": "0"}), "list of files"),
        (lambda d: _edit_manifest(d, params=None, drop="params"), r"lacks \['params'\]"),
        (lambda d: _edit_manifest(d, format="someone.else"), "another tool"),
        (lambda d: _edit_manifest(d, classes=[1], reseal=False), "own checksum does not match"),
        (lambda d: (d / "extra.bin").write_bytes(b"x"), "does not list"),
    ],
)
def test_damaged_saves_fail_clearly_and_are_left_as_they_are(
    fitted_vectors, tmp_path, damage, message
):
    clf, _ = fitted_vectors
    clf.save(tmp_path / "model")
    damage(tmp_path / "model")
    before = tree(tmp_path / "model")
    with pytest.raises(ValueError, match=message):
        IncrementalClassifier.load(tmp_path / "model")
    assert tree(tmp_path / "model") == before


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_manifest(directory: Path, drop: str | None = None, reseal: bool = True, **fields):
    """Change the manifest; ``reseal`` recomputes its own checksum, as anyone can."""
    manifest = json.loads((directory / "siamcl.json").read_text())
    manifest.update({k: v for k, v in fields.items() if k != drop})
    manifest.pop(drop, None)
    if reseal:
        manifest["manifest_sha256"] = _manifest_digest(manifest)
    (directory / "siamcl.json").write_text(json.dumps(manifest))


def _manifest_digest(manifest: dict) -> str:
    unsealed = {k: v for k, v in manifest.items() if k not in ("manifest_sha256", "hmac")}
    text = json.dumps(unsealed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_save_that_fails_midway_keeps_the_previous_save(fitted_vectors, tmp_path, monkeypatch):
    clf, probe = fitted_vectors
    clf.save(tmp_path / "model")
    before = tree(tmp_path / "model")

    def disk_full(self, directory):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(clf.store_), "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        clf.save(tmp_path / "model")
    assert tree(tmp_path / "model") == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary left behind
    monkeypatch.undo()
    assert np.array_equal(
        IncrementalClassifier.load(tmp_path / "model").predict(probe), clf.predict(probe)
    )


# ---------------------------------------------------------------- threads


def test_predict_while_another_thread_adds_classes(fitted_vectors):
    import copy

    clf = copy.deepcopy(fitted_vectors[0])
    _, probe = fitted_vectors
    rng = np.random.default_rng(5)
    new_labels = list(range(100, 130))
    valid = set(clf.classes_.tolist()) | set(new_labels)
    errors: list[BaseException] = []
    predictions = []
    adding_done = threading.Event()

    def add():
        try:
            for label in new_labels:
                support = rng.normal(size=(3, 12)).astype(np.float32) * 3
                clf.add_classes(support, np.full(3, label))
        except Exception as error:  # noqa: BLE001 (reported by the main thread)
            errors.append(error)
        finally:
            adding_done.set()

    def predict():
        try:
            while not adding_done.is_set():
                labels = clf.predict(probe)
                assert set(labels.tolist()) <= valid
                predictions.append(labels)
                proba = clf.predict_proba(probe)
                assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=add), threading.Thread(target=predict)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert set(new_labels) <= set(clf.classes_.tolist())
    assert len(predictions) >= 3  # predict really ran while classes were being added
