"""Loading runs no code: save directories carrying code-running pickles fail clearly.

Each case puts a pickle whose unpickling would create a marker file into one of the files a
loader reads, then recomputes every checksum (as anyone who can write the directory can), and
checks that loading fails with a ValueError naming a file while the marker never appears.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from siamcl import IncrementalClassifier, PrototypeStore
from siamcl.cli import main
from siamcl.data import class_incremental
from siamcl.training import EnergyBudget, Patience, Progress, StepBudget, TargetScore

MARKER_NAME = "pwned"


class Payload:
    """Unpickling this touches ``marker``: the stand-in for running an attacker's command."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path(self.marker).touch, ())


class SmallNet(nn.Module):
    """A user's own encoder (a module, so saving it needs a pickle)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 8))

    def forward(self, x):
        return nn.functional.normalize(self.body(x), dim=1)


def _vectors(n_tasks: int = 2):
    rng = np.random.default_rng(0)
    centres = np.random.default_rng(9).normal(size=(2 * n_tasks, 12)) * 3
    y = np.repeat(np.arange(2 * n_tasks), 15)
    X = (centres[y] + rng.normal(size=(len(y), 12))).astype(np.float32)
    return X, y


def _classifier(**params) -> IncrementalClassifier:
    defaults = {"epochs": 1, "batch_size": 16, "embedding_dim": 8, "flops": "off", "seed": 0}
    return IncrementalClassifier(**{**defaults, **params})


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    X, y = _vectors()
    clf = _classifier()
    clf.fit_task(X, y)
    directory = tmp_path_factory.mktemp("saved") / "model"
    clf.save(directory)
    return directory


def _pickle_bytes(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def _torch_pickle(marker: Path, wrap: bool = True) -> bytes:
    buffer = io.BytesIO()
    torch.save({"encoder": Payload(marker)} if wrap else Payload(marker), buffer)
    return buffer.getvalue()


def _npy_pickle(marker: Path) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _npz_pickle(marker: Path) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, state=np.array([Payload(marker)], dtype=object))
    return buffer.getvalue()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reseal(model: Path, **manifest_changes) -> None:
    """Recompute every checksum of a model directory (store first), as an attacker can."""
    store_meta = model / "store" / "store.json"
    if store_meta.is_file():
        try:
            meta = json.loads(store_meta.read_text())
            meta["checksums"] = {name: _sha(model / "store" / name) for name in meta["checksums"]}
            store_meta.write_text(json.dumps(meta))
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
    manifest = json.loads((model / "siamcl.json").read_text())
    manifest.update(manifest_changes)
    files = sorted(p for p in model.rglob("*") if p.is_file() and p.name != "siamcl.json")
    manifest["files"] = {p.relative_to(model).as_posix(): _sha(p) for p in files}
    unsealed = {k: v for k, v in manifest.items() if k not in ("manifest_sha256", "hmac")}
    text = json.dumps(unsealed, sort_keys=True, separators=(",", ":"))
    manifest["manifest_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    (model / "siamcl.json").write_text(json.dumps(manifest))


def _store_file(model: Path, suffix: str) -> Path:
    return next(p for p in sorted((model / "store").iterdir()) if p.name.endswith(suffix))


# (name, how to plant the payload); each plants into a copy of a good save, then reseals
ATTACKS = {
    "safetensors weights replaced by a pickle": lambda m, k: (
        m / "encoder.safetensors"
    ).write_bytes(_pickle_bytes(k)),
    "safetensors weights replaced by a torch pickle": lambda m, k: (
        m / "encoder.safetensors"
    ).write_bytes(_torch_pickle(k)),
    "objects.pt added and listed": lambda m, k: (
        (m / "objects.pt").write_bytes(_torch_pickle(k)),
        reseal(m, objects=["encoder"]),
    ),
    "objects.pt added, unlisted object names": lambda m, k: (m / "objects.pt").write_bytes(
        _torch_pickle(k)
    ),
    "format 1 with a pickled module encoder": lambda m, k: (
        (m / "encoder.safetensors").unlink(),
        (m / "encoder.pt").write_bytes(_torch_pickle(k, wrap=False)),
        reseal(m, format_version=1, encoder="module"),
    ),
    "format 1 with a pickle posing as a state dict": lambda m, k: (
        (m / "encoder.safetensors").unlink(),
        (m / "encoder.pt").write_bytes(_torch_pickle(k)),
        reseal(m, format_version=1, encoder="named"),
    ),
    "format 1 with objects.pt": lambda m, k: (
        (m / "objects.pt").write_bytes(_torch_pickle(k)),
        reseal(m, format_version=1),
    ),
    "memory.npz holding an object array": lambda m, k: (m / "memory.npz").write_bytes(
        _npz_pickle(k)
    ),
    "memory.npz replaced by a raw pickle": lambda m, k: (m / "memory.npz").write_bytes(
        _pickle_bytes(k)
    ),
    "reports.json replaced by a pickle": lambda m, k: (m / "reports.json").write_bytes(
        _pickle_bytes(k)
    ),
    "siamcl.json replaced by a pickle": lambda m, k: (m / "siamcl.json").write_bytes(
        _pickle_bytes(k)
    ),
    "store array holding objects": lambda m, k: _store_file(m, ".npy").write_bytes(_npy_pickle(k)),
    "store index replaced by a pickle": lambda m, k: _store_file(m, ".faiss").write_bytes(
        _pickle_bytes(k)
    ),
    "store.json replaced by a pickle": lambda m, k: (m / "store" / "store.json").write_bytes(
        _pickle_bytes(k)
    ),
    "an unlisted pickle beside the files": lambda m, k: (m / "extra.pt").write_bytes(
        _torch_pickle(k)
    ),
}


def _plant(saved: Path, tmp_path: Path, attack: str) -> tuple[Path, Path]:
    model = tmp_path / "model"
    shutil.copytree(saved, model)
    marker = tmp_path / MARKER_NAME
    ATTACKS[attack](model, marker)
    if (
        attack != "an unlisted pickle beside the files"
        and (model / "siamcl.json").read_bytes()[:1] == b"{"
    ):
        reseal(model)
    return model, marker


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_malicious_model_runs_nothing(saved, tmp_path, attack):
    model, marker = _plant(saved, tmp_path, attack)
    with pytest.raises(
        ValueError,
        match=r"corrupt|pickl|not list|code|another tool|objects|not a readable|not part",
    ):
        IncrementalClassifier.load(model)
    assert not marker.exists(), f"{attack}: loading ran the payload"


@pytest.mark.parametrize(
    "attack",
    [
        "store array holding objects",
        "store index replaced by a pickle",
        "store.json replaced by a pickle",
    ],
)
def test_malicious_store_runs_nothing(saved, tmp_path, attack):
    model, marker = _plant(saved, tmp_path, attack)
    with pytest.raises(ValueError):
        PrototypeStore.load(model / "store")
    assert not marker.exists()


@pytest.mark.parametrize(
    "attack", ["objects.pt added and listed", "safetensors weights replaced by a torch pickle"]
)
def test_malicious_checkpoint_runs_nothing(tmp_path, attack):
    X, y = _vectors(3)
    tasks = list(class_incremental(X, y, n_tasks=3, seed=0))
    checkpoint = tmp_path / "checkpoint"
    _classifier().fit_stream(tasks[:2], checkpoint_dir=checkpoint)
    marker = tmp_path / MARKER_NAME
    for state in checkpoint.glob("task-*"):  # every state, so none is left to fall back to
        ATTACKS[attack](state / "classifier", marker)
        reseal(state / "classifier")
        progress = json.loads((state / "progress.json").read_text())
        progress["classifier_sha256"] = _sha(state / "classifier" / "siamcl.json")
        (state / "progress.json").write_text(json.dumps(progress))
    with pytest.raises(ValueError):
        _classifier().fit_stream(tasks, checkpoint_dir=checkpoint)
    assert not marker.exists()


@pytest.mark.parametrize(
    "attack", ["objects.pt added and listed", "memory.npz holding an object array"]
)
def test_malicious_model_on_the_command_line_runs_nothing(saved, tmp_path, attack, capsys):
    model, marker = _plant(saved, tmp_path, attack)
    argv = ["fewshot", "eval", "--model", str(model), "--runs", str(tmp_path / "runs")]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert str(model) in error and error.count("\n") == 0
    assert not marker.exists()


def test_a_users_own_module_loads_when_passed_or_trusted(tmp_path):
    X, y = _vectors()
    clf = _classifier(encoder=SmallNet())
    clf.fit_task(X, y)
    clf.save(tmp_path / "model")
    with pytest.raises(ValueError, match=r"objects.pt .*\(encoder\).*trust_pickle=True"):
        IncrementalClassifier.load(tmp_path / "model")
    passed = IncrementalClassifier.load(tmp_path / "model", encoder=SmallNet())
    trusted = IncrementalClassifier.load(tmp_path / "model", trust_pickle=True)
    for loaded in (passed, trusted):
        np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


@dataclass(frozen=True)
class EveryOtherEpoch:
    """A user's own stopping policy (a class siamcl does not know, so it saves as an object)."""

    def reason(self, progress: Progress) -> str | None:
        return "an even epoch" if progress.epochs % 2 == 0 else None


def test_stopping_policies_save_as_data_and_load_without_unpickling(tmp_path):
    X, y = _vectors()
    policies = [TargetScore(0.99), Patience(2, min_delta=0.01), StepBudget(50), EnergyBudget(9.5)]
    clf = _classifier(epochs=3, stopping=policies, validation_fraction=0.2)
    clf.fit_task(X, y)
    clf.save(tmp_path / "model")
    assert not (tmp_path / "model" / "objects.pt").exists()
    manifest = json.loads((tmp_path / "model" / "siamcl.json").read_text())
    assert manifest["params"]["stopping"][1] == {
        "policy": "Patience",
        "epochs": 2,
        "min_delta": 0.01,
    }
    loaded = IncrementalClassifier.load(tmp_path / "model")
    assert loaded.stopping == policies
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))

    clf.set_params(stopping=[EveryOtherEpoch()])  # a user's class stays an opt-in pickle
    clf.save(tmp_path / "own")
    with pytest.raises(ValueError, match=r"objects.pt .*\(stopping\).*trust_pickle=True"):
        IncrementalClassifier.load(tmp_path / "own")
    assert IncrementalClassifier.load(tmp_path / "own", trust_pickle=True).stopping == [
        EveryOtherEpoch()
    ]


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        ([{"policy": "os.system", "command": "touch pwned"}], "unknown stopping policy"),
        ([{"policy": "Patience", "epochs": 2, "then": 1}], "is not a Patience"),
        ([{"policy": "TargetScore", "target": "0.9"}], "is not a TargetScore"),
        ({"policy": "TargetScore", "target": 0.9}, "must be a list"),
    ],
)
def test_stopping_policies_in_a_manifest_are_only_siamcls_own(tmp_path, policies, message):
    X, y = _vectors()
    clf = _classifier(stopping=[TargetScore(0.9)], validation_fraction=0.2)
    clf.fit_task(X, y)
    clf.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "siamcl.json").read_text())
    reseal(tmp_path / "model", params={**manifest["params"], "stopping": policies})
    with pytest.raises(ValueError, match=message):
        IncrementalClassifier.load(tmp_path / "model")


def test_a_signed_model_loads_only_with_its_key(saved, tmp_path):
    clf = IncrementalClassifier.load(saved)
    clf.save(tmp_path / "signed", key="secret")
    IncrementalClassifier.load(tmp_path / "signed", key="secret")
    IncrementalClassifier.load(tmp_path / "signed")  # no key asked: the checksums still hold
    with pytest.raises(ValueError, match="not signed with this key"):
        IncrementalClassifier.load(tmp_path / "signed", key="other")
    with pytest.raises(ValueError, match="saved without a key"):
        IncrementalClassifier.load(saved, key="secret")
    reseal(tmp_path / "signed", classes=[0])  # an edit resealed without the key
    with pytest.raises(ValueError, match="not signed with this key"):
        IncrementalClassifier.load(tmp_path / "signed", key="secret")


def test_a_store_index_with_other_ids_is_refused(saved, tmp_path):
    import faiss

    store_dir = tmp_path / "store"
    shutil.copytree(saved / "store", store_dir)
    index_file = next(store_dir.glob("*.faiss"))
    raw = faiss.read_index(str(index_file))  # owns the index the downcast view points into
    index = faiss.downcast_index(raw)
    ids = faiss.vector_to_array(index.id_map)
    faiss.copy_array_to_vector(ids + 1000, index.id_map)  # same vectors, other ids
    faiss.write_index(index, str(index_file))
    meta = json.loads((store_dir / "store.json").read_text())
    meta["checksums"][index_file.name] = _sha(index_file)
    (store_dir / "store.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="other prototype ids"):
        PrototypeStore.load(store_dir)


def test_random_one_byte_edits_always_fail_as_value_errors(saved, tmp_path):
    rng = np.random.default_rng(0)
    files = sorted(p.relative_to(saved) for p in saved.rglob("*") if p.is_file())
    for trial in range(60):
        model = tmp_path / f"edit{trial}"
        shutil.copytree(saved, model)
        path = model / files[rng.integers(len(files))]
        data = bytearray(path.read_bytes())
        position = int(rng.integers(len(data)))
        data[position] = (data[position] + 1 + int(rng.integers(255))) % 256
        path.write_bytes(bytes(data))
        with pytest.raises(ValueError):
            IncrementalClassifier.load(model)
