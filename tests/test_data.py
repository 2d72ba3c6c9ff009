"""Tests for siamcl.data: data sets, streams, image files, episodes and the Omniglot reader."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamcl.data import (
    DATASETS,
    EpisodeSampler,
    Task,
    class_incremental,
    classes_mask,
    load_dataset,
    load_images,
    load_omniglot,
    omniglot_alphabets,
    subsample,
)

# ---------------------------------------------------------------- named data sets


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist5k")


def test_mnist5k_shapes_dtypes_and_per_class_split(mnist5k):
    Xtr, ytr, Xte, yte = mnist5k
    assert Xtr.shape == (4000, 28, 28) and Xte.shape == (1000, 28, 28)
    assert Xtr.dtype == Xte.dtype == np.uint8
    assert ytr.dtype == yte.dtype == np.int64
    assert np.array_equal(np.bincount(ytr), [400] * 10)
    assert np.array_equal(np.bincount(yte), [100] * 10)
    assert Xtr.max() == 255 and Xtr.min() == 0


def test_mnist5k_train_and_test_do_not_overlap(mnist5k):
    Xtr, _, Xte, _ = mnist5k
    train_rows = {row.tobytes() for row in Xtr}
    test_rows = {row.tobytes() for row in Xte}
    assert len(train_rows) + len(test_rows) == 5000
    assert not train_rows & test_rows


def test_mnist5k_split_is_deterministic_and_ignores_global_random_state(mnist5k):
    np.random.seed(123)
    again = load_dataset("mnist5k")
    for first, second in zip(mnist5k, again):
        assert np.array_equal(first, second)
    other_seed = load_dataset("mnist5k", seed=1)
    assert not np.array_equal(mnist5k[2], other_seed[2])


def test_test_fraction_sets_the_split_size():
    _, ytr, _, yte = load_dataset("mnist5k", test_fraction=0.5)
    assert np.array_equal(np.bincount(yte), [250] * 10)
    assert len(ytr) == 2500
    with pytest.raises(ValueError, match="test_fraction"):
        load_dataset("mnist5k", test_fraction=1.0)


def test_digits_scaled_to_uint8():
    from sklearn.datasets import load_digits

    Xtr, ytr, Xte, yte = load_dataset("digits")
    assert Xtr.shape[1:] == (8, 8) and Xtr.dtype == np.uint8
    assert len(ytr) + len(yte) == 1797
    assert set(np.unique(ytr)) == set(range(10)) == set(np.unique(yte))
    allowed = set(np.rint(np.arange(17) * 255 / 16).astype(int))
    assert set(np.unique(np.concatenate([Xtr, Xte]))) <= allowed
    assert Xtr.max() == 255
    raw = load_digits()
    assert sorted(np.concatenate([Xtr, Xte]).sum(axis=(1, 2)).tolist()) == sorted(
        np.rint(raw.images * 255 / 16).sum(axis=(1, 2)).tolist()
    )


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError, match="mnist5k") as error:
        load_dataset("imagenet")
    assert all(name in str(error.value) for name in DATASETS)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "omniglot"])
def test_datasets_on_disk_need_their_files(name, tmp_path):
    with pytest.raises(FileNotFoundError, match="data_root"):
        load_dataset(name)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_dataset(name, data_root=tmp_path)


# ---------------------------------------------------------------- class-incremental streams


def _toy(n_classes=10, per_class=6):
    y = np.repeat(np.arange(n_classes), per_class)
    X = np.arange(len(y) * 4, dtype=np.float32).reshape(len(y), 2, 2)
    return X, y


def test_class_incremental_covers_every_class_once_and_evenly():
    X, y = _toy()
    tasks = class_incremental(X, y, n_tasks=3, seed=0)
    assert [task.index for task in tasks] == [0, 1, 2]
    assert [len(task.classes) for task in tasks] == [4, 3, 3]
    all_classes = [c for task in tasks for c in task.classes]
    assert sorted(all_classes) == list(range(10))
    for task in tasks:
        assert isinstance(task, Task)
        assert set(task.y.tolist()) == set(task.classes)
        assert len(task.X) == len(task.y) == 6 * len(task.classes)
        expected = X[np.isin(y, task.classes)]
        assert np.array_equal(task.X, expected)
    assert sum(len(task) for task in tasks) == len(y)


def test_class_incremental_seed_shuffles_and_class_order_is_honoured():
    X, y = _toy()
    first = [t.classes for t in class_incremental(X, y, 5, seed=0)]
    assert first == [t.classes for t in class_incremental(X, y, 5, seed=0)]
    assert first != [t.classes for t in class_incremental(X, y, 5, seed=1)]
    order = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    tasks = class_incremental(X, y, 5, seed=3, class_order=order)
    assert [t.classes for t in tasks] == [(9, 8), (7, 6), (5, 4), (3, 2), (1, 0)]


def test_task_select_picks_the_test_samples_of_its_classes():
    X, y = _toy()
    task = class_incremental(X, y, 5, class_order=range(10))[1]
    Xsel, ysel = task.select(X, y)
    assert set(ysel.tolist()) == {2, 3}
    assert np.array_equal(Xsel, X[(y == 2) | (y == 3)])
    assert np.array_equal(task.mask(y), classes_mask(y, (2, 3)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_tasks": 11}, "more than the number of classes"),
        ({"n_tasks": 0}, "n_tasks"),
        ({"n_tasks": 2, "class_order": [0, 1, 2]}, "missing from class_order"),
        ({"n_tasks": 2, "class_order": list(range(11))}, "not in y"),
        ({"n_tasks": 2, "class_order": [0] * 10}, "repeats"),
    ],
)
def test_class_incremental_rejects_bad_arguments(kwargs, message):
    X, y = _toy()
    with pytest.raises(ValueError, match=message):
        class_incremental(X, y, **kwargs)


def test_class_incremental_rejects_bad_samples():
    X, y = _toy()
    with pytest.raises(ValueError, match="samples but y has"):
        class_incremental(X[:-1], y, 2)
    with pytest.raises(TypeError, match="integer labels"):
        class_incremental(X, y.astype(float), 2)


# ---------------------------------------------------------------- subsample


def test_subsample_keeps_a_fraction_of_every_class():
    y = np.repeat(np.arange(4), [100, 50, 10, 2])
    X = np.arange(len(y))
    Xs, ys = subsample(X, y, 0.1, seed=0)
    assert np.array_equal(np.bincount(ys), [10, 5, 1, 1])
    assert np.array_equal(y[Xs], ys)  # rows stay paired with their labels
    assert np.all(np.diff(Xs) > 0)  # order preserved, no duplicates
    Xs2, _ = subsample(X, y, 0.1, seed=0)
    assert np.array_equal(Xs, Xs2)
    assert not np.array_equal(Xs, subsample(X, y, 0.1, seed=1)[0])
    _, ys_min = subsample(X, y, 0.1, min_per_class=3)
    assert np.array_equal(np.bincount(ys_min), [10, 5, 3, 2])
    assert len(subsample(X, y, 1.0)[1]) == len(y)
    with pytest.raises(ValueError, match="fraction"):
        subsample(X, y, 0.0)


# ---------------------------------------------------------------- image files


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def test_load_images_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(3, 12, 10), dtype=np.uint8)
    paths = [_write_png(tmp_path / f"g{i}.png", image) for i, image in enumerate(grey)]
    loaded = load_images(paths)
    assert loaded.dtype == np.uint8 and np.array_equal(loaded, grey)
    assert np.array_equal(load_images([str(p) for p in paths]), grey)

    colour = rng.integers(0, 256, size=(2, 12, 10, 3), dtype=np.uint8)
    paths = [_write_png(tmp_path / f"c{i}.png", image) for i, image in enumerate(colour)]
    assert np.array_equal(load_images(paths, grayscale=False), colour.transpose(0, 3, 1, 2))
    assert load_images(paths).shape == (2, 12, 10)


def test_load_images_resizes_and_requires_equal_sizes(tmp_path):
    small = _write_png(tmp_path / "small.png", np.zeros((8, 8), np.uint8))
    large = _write_png(tmp_path / "large.png", np.full((16, 20), 255, np.uint8))
    with pytest.raises(ValueError, match="large.png"):
        load_images([small, large])
    resized = load_images([small, large], size=(6, 5))
    assert resized.shape == (2, 6, 5)
    assert resized[0].max() == 0 and resized[1].min() == 255
    assert load_images([small], size=4).shape == (1, 4, 4)


def test_load_images_bad_files(tmp_path):
    good = _write_png(tmp_path / "good.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_images([good, tmp_path / "missing.png"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png"):
        load_images([good, broken])
    with pytest.raises(TypeError, match="single path"):
        load_images(str(good))
    with pytest.raises(ValueError, match="empty"):
        load_images([])


# ---------------------------------------------------------------- episodes


def test_episode_sampler_shapes_and_disjoint_support_query():
    y = np.repeat(np.arange(8), 7)
    X = np.arange(len(y) * 4).reshape(len(y), 2, 2)  # each sample identifiable
    sampler = EpisodeSampler(X, y, n_way=5, k_shot=2, n_query=3, seed=0, n_episodes=4)
    episodes = list(sampler)
    assert len(episodes) == len(sampler) == 4
    for episode in episodes:
        assert episode.support_X.shape == (10, 2, 2) and episode.query_X.shape == (15, 2, 2)
        assert len(set(episode.classes)) == 5
        assert np.array_equal(episode.support_y, np.repeat(episode.classes, 2))
        assert np.array_equal(episode.query_y, np.repeat(episode.classes, 3))
        support_ids = set(episode.support_X[:, 0, 0].tolist())
        query_ids = set(episode.query_X[:, 0, 0].tolist())
        assert len(support_ids) == 10 and len(query_ids) == 15
        assert not support_ids & query_ids
        # every sample carries its own label
        assert np.array_equal(y[episode.query_X[:, 0, 0] // 4], episode.query_y)
        assert np.array_equal(episode.query_targets, np.repeat(np.arange(5), 3))
    again = list(sampler)
    assert all(a.classes == b.classes for a, b in zip(episodes, again))


def test_episode_sampler_rejects_small_data():
    y = np.repeat(np.arange(4), [5, 5, 5, 2])
    X = np.zeros((len(y), 3))
    with pytest.raises(ValueError, match="only 4 classes"):
        EpisodeSampler(X, y, n_way=5, k_shot=1, n_query=1)
    with pytest.raises(ValueError, match=r"\{3: 2\}"):
        EpisodeSampler(X, y, n_way=2, k_shot=1, n_query=2)
    with pytest.raises(ValueError, match="k_shot"):
        EpisodeSampler(X, y, n_way=2, k_shot=0, n_query=2)


# ---------------------------------------------------------------- Omniglot

# subset -> alphabet -> number of characters; Greek is in both subsets, as in the real data
FAKE_SUBSETS = {
    "images_background_small1": {"Balinese": 2, "Greek": 2},
    "images_background_small2": {"Greek": 2, "Tagalog": 1},
}
DRAWERS = 3


def _fake_glyph(alphabet: str, character: int, drawer: int) -> np.ndarray:
    """A 105x105 white image with a black block whose place encodes what it shows."""
    pixels = np.full((105, 105), 255, np.uint8)
    row = 10 * (len(alphabet) % 5) + 5 * character
    pixels[row : row + 5, 10 * drawer : 10 * drawer + 5] = 0
    return pixels


def _fake_files(subset: str):
    for alphabet, n_characters in FAKE_SUBSETS[subset].items():
        for character in range(1, n_characters + 1):
            for drawer in range(1, DRAWERS + 1):
                name = f"{subset}/{alphabet}/character{character:02d}/09{character:02d}_{drawer:02d}.png"
                image = Image.fromarray(_fake_glyph(alphabet, character, drawer)).convert("1")
                yield name, image


def _write_fake_zips(folder: Path) -> Path:
    for subset in FAKE_SUBSETS:
        with zipfile.ZipFile(folder / f"{subset}.zip", "w") as archive:
            for name, image in _fake_files(subset):
                path = folder / "tmp.png"
                image.save(path)
                archive.write(path, name)
    (folder / "tmp.png").unlink()
    return folder


def _write_fake_folders(folder: Path) -> Path:
    for subset in FAKE_SUBSETS:
        for name, image in _fake_files(subset):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            image.save(folder / name)
    return folder


def _check_fake_omniglot(data):
    # Balinese 2 + Greek 2 (deduplicated) + Tagalog 1 characters, 3 drawers each
    assert data.images.shape == (15, 105, 105) and data.images.dtype == np.uint8
    assert data.class_names == (
        "Balinese/character01",
        "Balinese/character02",
        "Greek/character01",
        "Greek/character02",
        "Tagalog/character01",
    )
    assert np.array_equal(data.labels, np.repeat(np.arange(5), 3))
    assert np.array_equal(data.drawers, np.tile([1, 2, 3], 5))
    assert data.alphabet_names == ("Balinese", "Greek", "Tagalog")
    for i in range(len(data)):
        character = int(data.characters[i][-2:])
        expected = _fake_glyph(str(data.alphabets[i]), character, int(data.drawers[i]))
        assert np.array_equal(data.images[i], expected)
        assert data.paths[i].endswith(
            f"{data.alphabets[i]}/{data.characters[i]}/09{character:02d}_{data.drawers[i]:02d}.png"
        )


def test_omniglot_reads_zips_and_deduplicates(tmp_path):
    data = load_omniglot(_write_fake_zips(tmp_path), progress=False)
    _check_fake_omniglot(data)
    greek = data.paths[data.alphabets == "Greek"]
    assert all("images_background_small1.zip/" in path for path in greek)
    assert omniglot_alphabets(tmp_path) == ("Balinese", "Greek", "Tagalog")


def test_omniglot_reads_extracted_and_torchvision_layouts(tmp_path):
    extracted = _write_fake_folders(tmp_path / "extracted")
    _check_fake_omniglot(load_omniglot(extracted, progress=False))
    torchvision_root = tmp_path / "tv"
    _write_fake_folders(torchvision_root / "omniglot-py")
    _check_fake_omniglot(load_omniglot(torchvision_root, progress=False))
    one_subset = load_omniglot(extracted / "images_background_small2", progress=False)
    assert one_subset.alphabet_names == ("Greek", "Tagalog")


def test_omniglot_alphabets_and_size(tmp_path):
    _write_fake_zips(tmp_path)
    data = load_omniglot(tmp_path, alphabets=["Tagalog", "Greek"], size=28, progress=False)
    assert data.images.shape == (9, 28, 28)
    assert data.class_names == ("Greek/character01", "Greek/character02", "Tagalog/character01")
    assert np.array_equal(np.unique(data.labels), [0, 1, 2])
    one_zip = load_omniglot(tmp_path / "images_background_small1.zip", "Balinese", progress=False)
    assert len(one_zip) == 6
    with pytest.raises(ValueError, match="Balinese"):
        load_omniglot(tmp_path, alphabets=["Klingon"], progress=False)


def test_omniglot_split_through_load_dataset(tmp_path):
    Xtr, ytr, Xte, yte = load_dataset("omniglot", data_root=_write_fake_zips(tmp_path))
    assert Xtr.shape == (10, 105, 105) and Xte.shape == (5, 105, 105)
    assert np.array_equal(np.bincount(ytr), [2] * 5)
    assert np.array_equal(np.bincount(yte), [1] * 5)


def test_omniglot_missing_data_names_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="images_background_small1.zip"):
        load_omniglot(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_omniglot(tmp_path / "nowhere")
