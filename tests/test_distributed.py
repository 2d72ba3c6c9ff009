"""Data-parallel training under torchrun: identical stores on every rank, one-process accuracy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from siamcl.distributed import Ranks, backend_for

WORKER = Path(__file__).with_name("distributed_worker.py")


def _run(command: list[str], cwd: Path, succeed: bool = True) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run(
        command, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert (done.returncode == 0) == succeed, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_two_ranks_end_with_identical_stores_and_single_process_accuracy(tmp_path: Path) -> None:
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir(), multi.mkdir()
    _run([sys.executable, str(WORKER), str(single)], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    _run([*torchrun, "--nproc_per_node", "2", str(WORKER), str(multi)], tmp_path)

    rank0, rank1 = (np.load(multi / f"rank{r}.npz") for r in (0, 1))
    assert np.array_equal(rank0["labels"], rank1["labels"])
    assert np.array_equal(rank0["prototypes"], rank1["prototypes"])  # bit for bit
    assert sorted(rank0["labels"].tolist()) == list(range(10))

    states = sorted(entry.name for entry in (multi / "checkpoint").iterdir())
    assert states == ["task-00001", "task-00002"]  # written by rank 0 only; newest and fallback

    alone = json.loads((single / "rank0.json").read_text())
    ranks = [json.loads((multi / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["accuracy"] == ranks[1]["accuracy"]
    assert alone["accuracy"] > 0.8  # well above the 0.1 of chance
    assert abs(ranks[0]["accuracy"] - alone["accuracy"]) <= 0.02

    report = ranks[0]["report"]
    assert report["extra"]["ranks"] == 2
    per_rank = [report["extra"][f"peak_rss_bytes_rank{r}"] for r in (0, 1)]
    assert report["peak_rss_bytes"] == max(per_rank)
    # each rank saw its half of every batch: together, as many samples as one process
    assert (
        abs(report["samples_seen"] - alone["report"]["samples_seen"])
        <= 0.02 * report["samples_seen"]
    )
    assert "summed over 2 ranks" in report["energy_note"]


def test_ranks_given_different_data_refuse_to_train(tmp_path: Path) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command = [*torchrun, "--nproc_per_node", "2", str(WORKER), str(tmp_path), "--mismatched"]
    output = _run(command, tmp_path, succeed=False)
    assert "every rank must be given the whole task; ranks [1] got other data" in output
    assert not list(tmp_path.glob("rank*.json"))


def test_one_process_is_not_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ranks = Ranks.current()
    assert (ranks.rank, ranks.world, ranks.active) == (0, 1, False)
    assert ranks.sum(np.arange(3)).tolist() == [0, 1, 2]
    assert ranks.gather("x") == ["x"]


def test_batch_share_splits_global_batches_evenly() -> None:
    import torch

    rows = torch.arange(11)
    shares = [Ranks(rank, 3).batch_share(rows).tolist() for rank in range(3)]
    assert shares == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]  # 9 of 11 rows: equal shapes
    parts = [Ranks(rank, 3).part(10) for rank in range(3)]
    assert [(p.start, p.stop) for p in parts] == [(0, 3), (3, 7), (7, 10)]


def test_backend_follows_the_device() -> None:
    assert backend_for("cpu") == "gloo"
    assert backend_for("cuda:0") == "nccl"


def test_bench_cl_nproc_launches_processes_and_writes_its_own_result(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "siamcl.cli", "bench", "cl", "--nproc", "2", "--quick"]
    command += ["--quiet", "--dataset", "digits", "--tasks", "2", "--out", str(tmp_path)]
    _run(command, Path(__file__).parent)
    results = json.loads((tmp_path / "cl_digits_nproc2.json").read_text())
    assert results["settings"]["processes"] == 2
    assert results["settings"]["methods"] == ["siamese"]
    (run,) = results["runs"]
    assert "error" not in run, run.get("traceback")
    assert run["accuracy"] > 0.5  # ten digits: chance is 0.1
    assert run["report"]["extra"]["ranks"] == 2
    assert not (tmp_path / "cl_digits.json").exists()
