"""Export for deployment: the exported folder, read with onnxruntime and faiss alone
(siamcl.export.deploy), classifies the mnist5k test split as the classifier does."""

import copy
import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from siamcl import IncrementalClassifier
from siamcl.data import load_dataset
from siamcl.export import ExportedClassifier, predict_exported
from siamcl.learners.prediction import NotFittedError

AGREEMENT = 0.995  # share of test images on which the export predicts as clf.predict


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist5k")  # 4,000 training images, 1,000 test images


def _fitted(mnist, **params):
    X, y, _, _ = mnist
    clf = IncrementalClassifier(
        encoder="conv4-small", batch_size=64, lr=3e-3, augment=False, seed=0, **params
    )
    clf.fit_task(X, y)
    return clf


@pytest.fixture(scope="module")
def fp32(mnist):
    return _fitted(mnist, epochs=2)


@pytest.fixture(scope="module", params=["int8", "int8-ptq"])
def int8(mnist, request):
    # "int8": fake quantization from epoch 3 on; "int8-ptq": float training, then calibrated
    return _fitted(mnist, epochs=4, qat=request.param)


def _agreement(clf, folder, X):
    agreement = float(np.mean(predict_exported(folder, X) == clf.predict(X)))
    print(f"{folder.name}: export agrees with clf.predict on {agreement:.1%} of {len(X)}")
    return agreement


def test_onnx_fp32_predicts_as_the_classifier(fp32, mnist, tmp_path):
    folder = fp32.export(tmp_path / "fp32")
    names = {p.name for p in folder.iterdir()}
    assert names == {"encoder.onnx", "index.faiss", "classes.json", "prototypes.npy", "model.json"}
    model = json.loads((folder / "model.json").read_text())
    assert model["encoder"]["precision"] == "fp32"
    assert model["encoder"]["input"] == "canonical"
    assert model["preprocessing"]["input_size"] == [28, 28]
    assert model["embed_views"] == 1
    Xte = mnist[2]
    assert _agreement(fp32, folder, Xte) >= AGREEMENT
    exported = ExportedClassifier(folder)
    np.testing.assert_allclose(exported.embed(Xte[:64]), fp32.embed(Xte[:64]), atol=1e-4)
    assert exported.embed(Xte[:1]).shape == (1, 64)  # the batch dimension is dynamic


def test_onnx_int8_is_quantized_and_predicts_as_the_classifier(int8, mnist, tmp_path):
    folder = int8.export(tmp_path / "int8")
    model = json.loads((folder / "model.json").read_text())
    assert model["encoder"]["precision"] == "int8"
    ops = {node.op_type for node in onnx.load(folder / "encoder.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    options = onnxruntime.SessionOptions()  # onnxruntime fuses the QDQ pairs to int8 kernels
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    onnxruntime.InferenceSession(folder / "encoder.onnx", options)
    fused = {node.op_type for node in onnx.load(tmp_path / "optimized.onnx").graph.node}
    assert {"QLinearConv", "QGemm"} <= fused
    assert _agreement(int8, folder, mnist[2]) >= AGREEMENT


def test_torch_export_round_trip(fp32, mnist, tmp_path):
    folder = fp32.export(tmp_path / "pt2", format="torch.export")
    program = torch.export.load(folder / "encoder.pt2").module()
    Xte = mnist[2][:64]
    with torch.no_grad():
        embeddings = program(fp32.preprocessor_.canonical(Xte)).numpy()
    np.testing.assert_allclose(embeddings, fp32.embed(Xte), atol=1e-4)
    np.testing.assert_array_equal(predict_exported(folder, Xte), fp32.predict(Xte))


def test_other_sizes_are_resized_as_siamcl_does(fp32, mnist, tmp_path):
    folder = fp32.export(tmp_path / "fp32")
    large = np.kron(mnist[2][:50], np.ones((2, 2), dtype=np.uint8))  # 56x56
    exported = ExportedClassifier(folder)
    canonical = fp32.preprocessor_.canonical(large).numpy()
    np.testing.assert_allclose(exported.canonical(large), canonical, atol=1e-5)
    np.testing.assert_array_equal(exported.predict(large), fp32.predict(large))


def test_vectors_votes_and_an_untrained_index(mnist, tmp_path):
    X, y = mnist[0].reshape(len(mnist[0]), -1)[::4] / 255.0, mnist[1][::4]
    clf = IncrementalClassifier(
        epochs=1, index="IVF64,Flat", metric="l2", prototypes_per_class=3, vote_k=3, seed=0
    )
    clf.fit_task(X, y)
    folder = clf.export(tmp_path / "vectors")
    model = json.loads((folder / "model.json").read_text())
    assert model["preprocessing"]["kind"] == "vector"
    assert model["store"]["index"].startswith("Flat (exact")  # 30 prototypes train no IVF64
    classes = json.loads((folder / "classes.json").read_text())
    assert (classes["metric"], classes["vote_k"], len(classes["ids"])) == ("l2", 3, 30)
    queries = mnist[2].reshape(len(mnist[2]), -1)[:300] / 255.0
    np.testing.assert_array_equal(predict_exported(folder, queries), clf.predict(queries))


def test_refusals(fp32, int8, mnist, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        fp32.export(tmp_path / "x", format="tflite")
    with pytest.raises(NotFittedError, match="not fitted"):
        IncrementalClassifier().export(tmp_path / "x")
    views = copy.copy(fp32)
    views.embed_views = 3
    with pytest.raises(ValueError, match="embed_views=3"):
        views.export(tmp_path / "x")
    with pytest.raises(ValueError, match="int8 encoder with torch.export"):
        int8.export(tmp_path / "x", format="torch.export")
    int4 = IncrementalClassifier(encoder="conv4-small", epochs=1, qat="int4", seed=0)
    int4.fit_task(mnist[0][::20], mnist[1][::20])
    with pytest.raises(ValueError, match="int4"):
        int4.export(tmp_path / "x")
    pool_first = IncrementalClassifier(
        encoder="conv4-flat-pool-first", epochs=1, qat="int8", input_size=12, seed=0
    )
    pool_first.fit_task(mnist[0][::20], mnist[1][::20])
    with pytest.raises(ValueError, match="batch norm that does not follow a convolution"):
        pool_first.export(tmp_path / "x")
    empty = copy.deepcopy(fp32)
    empty.reset_classes()
    with pytest.raises(ValueError, match="no classes are known"):
        empty.export(tmp_path / "x")
    assert not (tmp_path / "x").exists()
