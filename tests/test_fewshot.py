"""One-shot training, N-way one-shot runs on disk, their evaluation, the CLI and the bench."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from siamcl import IncrementalClassifier
from siamcl.augment import RandomAffine
from siamcl.cli import main
from siamcl.data import load_images, load_omniglot
from siamcl.fewshot import (
    EpisodicTrainer,
    evaluate_runs,
    make_runs,
    one_shot_predict,
    prototypical_loss,
    read_runs,
    with_symmetries,
)
from siamcl.transductive import transductive_predict

# subset -> alphabet -> number of characters
FAKE_SUBSETS = {
    "images_background_small1": {"Alpha": 6, "Beta": 6},
    "images_background_small2": {"Gamma": 6, "Delta": 5},
}
DRAWERS = 6
SIDE = 32


def _glyph(alphabet: str, character: int, drawer: int) -> np.ndarray:
    """Dark strokes on white: a random 6x6 pattern per character, jittered per drawer."""
    seed = sum(map(ord, alphabet)) * 100 + character
    pattern = np.random.default_rng(seed).random((6, 6)) < 0.4
    strokes = np.kron(pattern, np.ones((4, 4), dtype=bool))
    pixels = np.full((SIDE, SIDE), 255, np.uint8)
    jitter = np.random.default_rng(seed * 100 + drawer)
    dy, dx = jitter.integers(2, 7, size=2)
    pixels[dy : dy + 24, dx : dx + 24][strokes] = 0
    noise = jitter.random((SIDE, SIDE)) < 0.03
    pixels[noise] = 255 - pixels[noise]
    return pixels


def _write_fake_omniglot(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for subset, alphabets in FAKE_SUBSETS.items():
        with zipfile.ZipFile(folder / f"{subset}.zip", "w") as archive:
            for alphabet, n_characters in alphabets.items():
                for character in range(1, n_characters + 1):
                    for drawer in range(1, DRAWERS + 1):
                        image = Image.fromarray(_glyph(alphabet, character, drawer))
                        path = folder / "glyph.png"
                        image.save(path)
                        name = f"{character:02d}{drawer:02d}_{drawer:02d}.png"
                        archive.write(path, f"{subset}/{alphabet}/character{character:02d}/{name}")
    (folder / "glyph.png").unlink()
    return folder


def _identify(pixels: np.ndarray) -> tuple[str, int, int]:
    for alphabets in FAKE_SUBSETS.values():
        for alphabet, n_characters in alphabets.items():
            for character in range(1, n_characters + 1):
                for drawer in range(1, DRAWERS + 1):
                    if np.array_equal(_glyph(alphabet, character, drawer), pixels):
                        return alphabet, character, drawer
    raise AssertionError("image is not one of the fake glyphs")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return _write_fake_omniglot(tmp_path_factory.mktemp("omniglot"))


@pytest.fixture(scope="module")
def trainer() -> EpisodicTrainer:
    return EpisodicTrainer(
        input_size=16, ways=6, shots=1, queries=3, steps=40, lr=3e-3, flops="off", seed=0
    )


@pytest.fixture(scope="module")
def model_dir(data_root, trainer, tmp_path_factory) -> Path:
    train = load_omniglot(data_root, ["Alpha", "Beta"], progress=False)
    classifier = trainer.fit(train.images, train.labels)
    directory = tmp_path_factory.mktemp("model") / "model"
    classifier.save(directory)
    return directory


@pytest.fixture(scope="module")
def runs_dir(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    make_runs(load_omniglot(data_root, ["Gamma", "Delta"], progress=False), out, 5, 4, seed=3)
    return out


# ---------------------------------------------------------------------------- runs


def test_make_runs_writes_the_standard_layout(runs_dir):
    runs = read_runs(runs_dir)
    assert [run.name for run in runs] == [f"run{i:02d}" for i in range(1, 5)]
    line_format = re.compile(r"^(run\d\d)/test/item\d\d\.png \1/training/class\d\d\.png$")
    for run in runs:
        folder = runs_dir / run.name
        assert sorted(p.name for p in (folder / "training").iterdir()) == [
            f"class{i:02d}.png" for i in range(1, 6)
        ]
        assert sorted(p.name for p in (folder / "test").iterdir()) == [
            f"item{i:02d}.png" for i in range(1, 6)
        ]
        lines = (folder / "class_labels.txt").read_text().splitlines()
        assert len(lines) == 5 and all(line_format.match(line) for line in lines)
        assert all(line.startswith(f"{run.name}/") for line in lines)

        support = [_identify(p) for p in load_images(run.support)]
        queries = [_identify(p) for p in load_images(run.queries)]
        assert len({alphabet for alphabet, _, _ in support + queries}) == 1
        assert len({c for _, c, _ in support}) == 5  # five different characters
        support_drawers = {d for _, _, d in support}
        query_drawers = {d for _, _, d in queries}
        assert len(support_drawers) == len(query_drawers) == 1
        assert support_drawers != query_drawers
        for query, target in zip(queries, run.targets):
            assert query[:2] == support[target][:2]  # same alphabet and character
        assert sorted(run.targets) == list(range(5))  # every class tested once


def test_make_runs_alternates_alphabets_and_is_reproducible(data_root, tmp_path):
    data = load_omniglot(data_root, ["Gamma", "Delta"], progress=False)
    first = make_runs(data, tmp_path / "a", ways=5, runs=4, seed=7)
    again = make_runs(data, tmp_path / "b", ways=5, runs=4, seed=7)
    assert [run.alphabet for run in first] == ["Delta", "Gamma", "Delta", "Gamma"]
    for run in first:
        a = (tmp_path / "a" / run.name / "class_labels.txt").read_text()
        assert a == (tmp_path / "b" / run.name / "class_labels.txt").read_text()
    assert [r.targets for r in first] == [r.targets for r in again]
    # 6-way runs need six characters: only Gamma has them
    six = make_runs(data, tmp_path / "c", ways=6, runs=2, seed=0)
    assert {run.alphabet for run in six} == {"Gamma"}


def test_make_runs_rejects_alphabets_too_small(data_root, tmp_path):
    data = load_omniglot(data_root, ["Delta"], progress=False)
    with pytest.raises(ValueError, match="no alphabet has 6 characters"):
        make_runs(data, tmp_path, ways=6, runs=1)
    with pytest.raises(ValueError, match="runs must be a positive integer"):
        make_runs(data, tmp_path, ways=5, runs=0)


def _copy_runs(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_read_runs_names_missing_and_malformed_files(runs_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_runs(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no runs in"):
        read_runs(tmp_path / "empty")

    missing = _copy_runs(runs_dir, tmp_path / "missing")
    (missing / "run02" / "test" / "item03.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"run02/test/item03\.png is missing"):
        read_runs(missing)

    malformed = _copy_runs(runs_dir, tmp_path / "malformed")
    labels = malformed / "run01" / "class_labels.txt"
    labels.write_text(labels.read_text() + "run01/test/item01.png\n")
    with pytest.raises(ValueError, match=r"run01/class_labels\.txt line 6"):
        read_runs(malformed)

    foreign = _copy_runs(runs_dir, tmp_path / "foreign")
    labels = foreign / "run01" / "class_labels.txt"
    labels.write_text(labels.read_text().replace("run01/training/", "run01/test/item", 1))
    with pytest.raises((ValueError, FileNotFoundError), match="line 1"):
        read_runs(foreign)


def test_read_runs_accepts_one_run_folder(runs_dir):
    (single,) = read_runs(runs_dir / "run03")
    assert single == read_runs(runs_dir)[2]


# ---------------------------------------------------------------------------- training


def test_with_symmetries_turns_and_mirrors_images_into_new_classes():
    images = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3)
    labels = np.array([0, 4])
    turned, new_labels = with_symmetries(images, labels, mirrors=False)
    assert turned.shape == (8, 1, 3, 3)
    assert new_labels.tolist() == [0, 4, 5, 9, 10, 14, 15, 19]
    assert torch.equal(turned[2], torch.rot90(images[0], 1, dims=(-2, -1)))
    assert torch.equal(turned[5], torch.rot90(images[1], 2, dims=(-2, -1)))

    both, both_labels = with_symmetries(images, labels)
    assert both.shape == (16, 1, 3, 3) and len(set(both_labels.tolist())) == 16
    assert torch.equal(both[2], torch.flip(images[0], dims=(-1,)))  # mirror of class 0
    assert both_labels[2] == 5
    assert torch.equal(both[10], torch.rot90(both[2], 1, dims=(-2, -1)))  # variant 5, item 0
    # all eight variants of an asymmetric image differ
    variants = both[both_labels % 5 == 0]
    assert len({tuple(v.flatten().tolist()) for v in variants}) == 8

    alone, alone_labels = with_symmetries(images, labels, rotations=False, mirrors=False)
    assert torch.equal(alone, images) and alone_labels.tolist() == [0, 4]


def test_prototypical_loss_is_cross_entropy_against_support_means():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(4, 5, 8, generator=generator), dim=2)
    loss = prototypical_loss(embeddings, shots=2, temperature=0.5)
    prototypes = torch.nn.functional.normalize(embeddings[:, :2].mean(1), dim=1)
    expected = 0.0
    for c in range(4):
        for q in range(2, 5):
            logits = prototypes @ embeddings[c, q] / 0.5
            expected += -torch.log_softmax(logits, 0)[c]
    assert torch.isclose(loss, expected / 12, atol=1e-5)
    separated = torch.eye(4).unsqueeze(1).repeat(1, 3, 1)  # each class on its own axis
    assert prototypical_loss(separated, shots=1, temperature=0.05) < 1e-6


def test_trainer_returns_a_fitted_classifier_with_its_report(model_dir, trainer, data_root):
    classifier = IncrementalClassifier.load(model_dir)
    (report,) = classifier.reports
    assert report.method == "episodic"
    assert report.samples_seen == trainer.steps * trainer.ways * 4
    assert report.wall_s > 0 and report.energy_j > 0
    assert classifier.preprocessor_.input_size == (16, 16)
    assert classifier.preprocessor_.invert is True  # dark strokes on white
    train = load_omniglot(data_root, ["Alpha", "Beta"], progress=False)
    assert classifier.classes_.tolist() == sorted(set(train.labels.tolist()))  # not rotated
    assert classifier.score(train.images, train.labels) > 0.9


def test_trained_encoder_classifies_unseen_alphabets_from_one_example(model_dir, runs_dir):
    classifier = IncrementalClassifier.load(model_dir)
    trained = evaluate_runs(classifier, read_runs(runs_dir))["mean_accuracy"]
    assert trained >= 0.8  # 5-way: chance is 0.2


def test_eval_gives_the_library_answers(model_dir, runs_dir):
    runs = read_runs(runs_dir)
    results = evaluate_runs(IncrementalClassifier.load(model_dir), runs)
    for run, row in zip(runs, results["runs"]):
        clf = IncrementalClassifier.load(model_dir)
        clf.reset_classes()
        clf.add_classes(load_images(run.support), np.arange(run.ways))
        predicted = clf.predict(load_images(run.queries))
        assert row["predicted"] == [run.support[i].name for i in predicted]
        assert row["correct"] == int((predicted == np.array(run.targets)).sum())
    assert results["mean_accuracy"] == pytest.approx(
        np.mean([row["accuracy"] for row in results["runs"]])
    )


def test_one_shot_predict_leaves_the_classifier_unchanged(model_dir, runs_dir):
    classifier = IncrementalClassifier.load(model_dir)
    classes, n_reports = classifier.classes_.tolist(), len(classifier.reports)
    run = read_runs(runs_dir)[0]
    one_shot_predict(classifier, load_images(run.support), load_images(run.queries))
    assert classifier.classes_.tolist() == classes
    assert len(classifier.reports) == n_reports


def test_transduction_none_on_embeddings_is_the_classifier_s_own_answer(model_dir, runs_dir):
    classifier = IncrementalClassifier.load(model_dir)
    for run in read_runs(runs_dir):
        support, queries = load_images(run.support), load_images(run.queries)
        own = one_shot_predict(classifier, support, queries)
        on_embeddings = transductive_predict(
            classifier.embed(support), classifier.embed(queries), "none"
        )
        assert on_embeddings.tolist() == own.tolist()
        balanced = one_shot_predict(classifier, support, queries, "balanced")
        assert balanced.shape == own.shape and set(balanced.tolist()) <= set(range(run.ways))
    with pytest.raises(ValueError, match="unknown transduction 'all'"):
        one_shot_predict(classifier, support, queries, "all")


def test_evaluate_runs_with_transduction_scores_the_refined_predictions(model_dir, runs_dir):
    classifier = IncrementalClassifier.load(model_dir).set_params(embed_views=1)
    runs = read_runs(runs_dir)
    results = evaluate_runs(classifier, runs, "balanced")
    for run, row in zip(runs, results["runs"]):
        expected = transductive_predict(
            classifier.embed(load_images(run.support)),
            classifier.embed(load_images(run.queries)),
            "balanced",
        )
        assert row["predicted"] == [run.support[i].name for i in expected]
        assert row["correct"] == int((expected == np.array(run.targets)).sum())


def test_channels_last_training_is_the_same_training():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(30, 12, 12), dtype=np.uint8)
    y = np.repeat(np.arange(6), 5)
    settings = {"input_size": 12, "ways": 3, "queries": 2, "steps": 3, "flops": "off"}
    embeddings = [
        EpisodicTrainer(channels_last=flag, **settings).fit(X, y).embed(X) for flag in (True, False)
    ]
    np.testing.assert_allclose(embeddings[0], embeddings[1], atol=1e-3)
    with pytest.raises(TypeError, match="channels_last must be True or False"):
        EpisodicTrainer(channels_last="yes", **settings).fit(X, y)


def test_mixed_precision_training_is_the_same_training_up_to_rounding():
    import warnings

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(30, 12, 12), dtype=np.uint8)
    y = np.repeat(np.arange(6), 5)
    settings = {"input_size": 12, "ways": 3, "queries": 2, "steps": 3, "flops": "off"}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="bfloat16 is not native")
        embeddings = [
            EpisodicTrainer(precision=p, **settings).fit(X, y).embed(X) for p in ("fp32", "bf16")
        ]
    agreement = np.sum(embeddings[0] * embeddings[1], axis=1)  # unit rows: cosines
    assert agreement.min() > 0.95 and not np.allclose(embeddings[0], embeddings[1], atol=1e-6)


def test_encoder_keeps_its_training_layout_until_saved_and_loaded(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(30, 12, 12), dtype=np.uint8)
    y = np.repeat(np.arange(6), 5)
    settings = {"input_size": 12, "ways": 3, "queries": 2, "steps": 2, "flops": "off"}

    def conv_weight(classifier):
        # the second convolution: with one input channel both layouts are the same
        return [p for p in classifier.encoder_.parameters() if p.dim() == 4][1]

    for flag in (True, False):
        classifier = EpisodicTrainer(channels_last=flag, **settings).fit(X, y)
        weight = conv_weight(classifier)
        assert weight.is_contiguous(memory_format=torch.channels_last) is flag
        assert weight.is_contiguous() is not flag
    classifier.save(tmp_path / "model")
    loaded = IncrementalClassifier.load(tmp_path / "model")
    assert conv_weight(loaded).is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(loaded.embed(X), classifier.embed(X), atol=1e-5)


def test_channels_last_batches_and_encoder():
    from siamcl.learners.episodic import _ChannelsLast
    from siamcl.training import Batch, BatchPreparation

    batch = _ChannelsLast(BatchPreparation())(Batch(torch.rand(4, 3, 8, 8), torch.arange(4)))
    assert batch.inputs.is_contiguous(memory_format=torch.channels_last)
    assert not batch.inputs.is_contiguous()
    vectors = _ChannelsLast(BatchPreparation())(Batch(torch.rand(4, 5), torch.arange(4)))
    assert vectors.inputs.shape == (4, 5)


def test_trainer_with_the_prototypical_loss_and_no_symmetries():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(30, 12, 12), dtype=np.uint8)
    y = np.repeat(np.arange(6), 5)
    trainer = EpisodicTrainer(
        input_size=12,
        augment=RandomAffine(degrees=0.0, shear=0.0),  # distortions of one's own
        loss="prototypical",
        ways=3,
        queries=2,
        steps=3,
        rotations=False,
        mirrors=False,
        flops="off",
    )
    classifier = trainer.fit(X, y)
    assert classifier.reports[0].samples_seen == 27
    assert classifier.loss == "multisimilarity"  # the learner's own loss for later fit_task


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ways": 50}, ValueError, "only 48 classes with symmetries"),
        ({"ways": 30, "rotations": False, "mirrors": False}, ValueError, "only 6 classes"),
        ({"queries": 5}, ValueError, "shots \\+ queries = 6"),
        ({"loss": "hinge"}, ValueError, "unknown loss 'hinge'"),
        ({"steps": 0}, ValueError, "steps must be a positive integer"),
        ({"input_size": (0, 4)}, ValueError, "size must be positive"),
        ({"augment": "strong"}, TypeError, "augment must be True, False or a RandomAffine"),
        ({"precision": "half"}, ValueError, "precision must be one of"),
    ],
)
def test_trainer_rejects_bad_settings(kwargs, error, message):
    X = np.zeros((30, 8, 8), np.uint8)
    y = np.repeat(np.arange(6), 5)
    with pytest.raises(error, match=message):
        EpisodicTrainer(**{"ways": 4, "steps": 1, "flops": "off", **kwargs}).fit(X, y)


def test_trainer_rejects_vectors():
    with pytest.raises(ValueError, match="needs images"):
        EpisodicTrainer().fit(np.zeros((10, 5)), np.arange(10))


# ---------------------------------------------------------------------------- command line


def test_cli_train_make_runs_and_eval(data_root, tmp_path, capsys):
    model, runs, result = tmp_path / "model", tmp_path / "runs", tmp_path / "eval.json"
    assert (
        main(
            ["fewshot", "train", "--data-root", str(data_root), "--alphabets", "Alpha", "Beta"]
            + ["--out", str(model), "--steps", "3", "--ways", "4", "--input-size", "12"]
            + ["--distortion", "0.5", "--quiet"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "trained on 12 characters of Alpha, Beta" in printed
    assert re.search(r"throughput: [0-9.]+ steps/s, [0-9]+ images/s", printed)
    assert (
        main(
            ["fewshot", "make-runs", "--data-root", str(data_root), "--alphabets", "Gamma"]
            + ["--ways", "4", "--runs", "3", "--out", str(runs)]
        )
        == 0
    )
    threads = torch.get_num_threads()
    argv = ["fewshot", "eval", "--model", str(model), "--runs", str(runs), "--out", str(result)]
    assert main(argv) == 0
    assert torch.get_num_threads() == threads  # eval runs on one thread, then restores them
    printed = capsys.readouterr().out
    saved = json.loads(result.read_text())
    assert [row["run"] for row in saved["runs"]] == ["run01", "run02", "run03"]
    assert f"mean accuracy over 3 runs: {saved['mean_accuracy']:.4f}" in printed
    library = evaluate_runs(IncrementalClassifier.load(model), read_runs(runs))
    assert [r["predicted"] for r in saved["runs"]] == [r["predicted"] for r in library["runs"]]
    assert saved["embed_views"] == EpisodicTrainer().embed_views  # the model's own setting
    assert main([*argv, "--embed-views", "1"]) == 0
    single = json.loads(result.read_text())
    assert single["embed_views"] == 1
    single_library = evaluate_runs(
        IncrementalClassifier.load(model).set_params(embed_views=1), read_runs(runs)
    )
    assert [r["predicted"] for r in single["runs"]] == [
        r["predicted"] for r in single_library["runs"]
    ]
    assert main([*argv, "--transduction", "balanced"]) == 0
    balanced = json.loads(result.read_text())
    assert balanced["transduction"] == "balanced"
    balanced_library = evaluate_runs(IncrementalClassifier.load(model), read_runs(runs), "balanced")
    assert balanced["mean_accuracy"] == balanced_library["mean_accuracy"]


def test_cli_distortion_options_reach_the_previous_and_new_defaults():
    import argparse

    from siamcl.cli.fewshot import _distortion
    from siamcl.learners.episodic import EPISODIC_DISTORTION, PREVIOUS_DISTORTION

    def given(**options) -> object:
        defaults = {"no_augment": False, "distortion": None, "elastic": None}
        return _distortion(argparse.Namespace(**{**defaults, **options}))

    assert given() is True and given(no_augment=True) is False
    assert given(elastic=0.0) == PREVIOUS_DISTORTION
    assert given(distortion=1.5) == EPISODIC_DISTORTION
    assert given(distortion=1.0, elastic=0.0) == RandomAffine()
    with pytest.raises(ValueError, match="--elastic must be non-negative"):
        given(elastic=-0.1)


def test_cli_errors_are_one_line_naming_the_file(data_root, model_dir, runs_dir, tmp_path, capsys):
    def error_of(argv: list[str]) -> str:
        assert main(argv) == 2
        message = capsys.readouterr().err.strip()
        assert message.count("\n") == 0
        return message

    assert "images_background_small1.zip" in error_of(
        ["fewshot", "train", "--data-root", str(tmp_path), "--out", str(tmp_path / "m")]
    )
    broken = _copy_runs(runs_dir, tmp_path / "broken")
    (broken / "run04" / "test" / "item02.png").write_bytes(b"not a png")
    assert "run04/test/item02.png" in error_of(
        ["fewshot", "eval", "--model", str(model_dir), "--runs", str(broken)]
    )
    assert "no_model" in error_of(
        ["fewshot", "eval", "--model", str(tmp_path / "no_model"), "--runs", str(runs_dir)]
    )
    assert "embed_views must be a positive integer, got 0" in error_of(
        ["fewshot", "eval", "--model", str(model_dir), "--runs", str(runs_dir)]
        + ["--embed-views", "0"]
    )
    assert "Klingon" in error_of(
        ["fewshot", "make-runs", "--data-root", str(data_root), "--alphabets", "Klingon"]
        + ["--out", str(tmp_path / "r")]
    )


# ---------------------------------------------------------------------------- benchmark


def test_bench_fewshot_writes_results(data_root, model_dir, tmp_path):
    out = tmp_path / "results"
    argv = ["bench", "fewshot", "--data-root", str(data_root), "--model", str(model_dir)]
    argv += ["--train-alphabets", "Alpha", "Beta", "--alphabets", "Gamma", "Delta"]
    argv += ["--shots", "1,2", "--ways", "5", "--runs", "2", "--softmax-epochs", "1"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "fewshot_omniglot.json").read_text())
    assert (out / "fewshot_omniglot.md").is_file() and (out / "fewshot_omniglot.png").is_file()
    assert results["one_shot"]["ways"] == 5 and len(results["one_shot"]["runs"]) == 2
    assert results["one_shot"]["embed_views"] == 8  # the trainer's default
    assert set(results["one_shot"]["single_view"]["by_alphabet"]) == {"Gamma", "Delta"}
    assert "accuracy (1 view)" in (out / "fewshot_omniglot.md").read_text()
    transductive = results["one_shot"]["transductive"]
    assert set(transductive["by_alphabet"]) == {"Gamma", "Delta"}
    assert transductive["mean_accuracy"] >= results["one_shot"]["mean_accuracy"] - 0.2
    assert "transductive (balanced)" in (out / "fewshot_omniglot.md").read_text()
    matched = results["one_shot"]["matched"]
    assert set(matched["by_alphabet"]) == {"Gamma", "Delta"}
    assert 0 <= matched["mean_accuracy"] <= 1
    assert "| matched |" in (out / "fewshot_omniglot.md").read_text()
    rows = results["incremental"]
    assert {(r["method"], r["shots"]) for r in rows} == {
        ("siamese", 1),
        ("siamese", 2),
        ("softmax-finetune", 1),
        ("softmax-finetune", 2),
    }
    for row in rows:
        assert [p["alphabet"] for p in row["curve"]] == ["Gamma", "Delta"]
        assert [p["classes_seen"] for p in row["curve"]] == [6, 11]
        assert row["accuracy"] == row["curve"][-1]["accuracy"]
        assert 0.0 <= row["accuracy"] <= 1.0
    assert results["training"]["reports"][0]["method"] == "episodic"


def test_within_group_episodes_come_from_one_group_or_its_turned_copy():
    trainer = EpisodicTrainer(ways=2, within_group=1.0)
    base = np.repeat(np.arange(5), 2)  # classes 0-2 in group "a", 3-4 in group "b"
    groups = trainer._group_of_class(base, np.where(base < 3, "a", "b"))
    labels = np.concatenate([base, base + 5])  # variant 1 (a turned copy) of every class
    positions = trainer._groups_with_symmetries(labels, base, groups)
    classes = np.unique(labels)
    as_sets = sorted(sorted(classes[p].tolist()) for p in positions)
    assert as_sets == [[0, 1, 2], [3, 4], [5, 6, 7], [8, 9]]


def test_trainer_rejects_inconsistent_groups():
    X = np.zeros((12, 8, 8), np.uint8)
    y = np.repeat(np.arange(6), 2)
    trainer = EpisodicTrainer(ways=2, queries=1, steps=1, flops="off")
    with pytest.raises(ValueError, match="one group per image"):
        trainer.fit(X, y, groups=np.zeros(5))
    with pytest.raises(ValueError, match="class 0 has images in groups"):
        trainer.fit(X, y, groups=np.arange(12))
    with pytest.raises(ValueError, match="within_group must be in"):
        EpisodicTrainer(ways=2, queries=1, steps=1, within_group=2.0).fit(X, y)


def test_trainer_with_groups_trains():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(30, 12, 12), dtype=np.uint8)
    y = np.repeat(np.arange(6), 5)
    trainer = EpisodicTrainer(
        input_size=12, ways=3, queries=2, steps=4, within_group=1.0, flops="off"
    )
    classifier = trainer.fit(X, y, groups=y // 3)
    assert classifier.reports[0].samples_seen == 36


def test_recipes_benchmark_reports_accuracies_and_energy_relative_to_the_reference(
    data_root, tmp_path, monkeypatch
):
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "fewshot_recipes.py"
    spec = importlib.util.spec_from_file_location("benchmark_fewshot_recipes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tiny = {"input_size": 12, "ways": 4, "queries": 2, "flops": "off", "embed_views": 2}
    monkeypatch.setattr(module, "SPLITS", {"ab": ["Alpha", "Beta"]})
    monkeypatch.setattr(
        module,
        "RECIPES",
        {"old": {**tiny, "steps": 4, "channels_last": False}, "new": {**tiny, "steps": 2}},
    )
    argv = ["--data-root", str(data_root), "--seeds", "0", "--reference", "old"]
    results = module.main([*argv, "--runs", "2", "--ways", "5", "--out", str(tmp_path)])
    rows = {row["recipe"]: row for row in results["rows"]}
    assert rows["old"]["energy_ratio"] == pytest.approx(1.0)
    assert rows["new"]["energy_ratio"] == pytest.approx(
        rows["new"]["train_energy_j"] / rows["old"]["train_energy_j"]
    )
    for row in rows.values():
        assert 0 <= row["incremental_1shot"] <= 1 and 0 <= row["transductive"] <= 1
        assert 0 <= row["matched"] <= 1
    assert "| ab | new | 1 |" in (tmp_path / "fewshot_recipes.md").read_text()
    with pytest.raises(SystemExit):
        module.main([*argv, "--recipes", "nope"])
