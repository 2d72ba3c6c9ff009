"""siamcl.threads.cpu_threads: torch's pool and the BLAS / OpenMP pools, set and restored."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info

from siamcl.fewshot import torch_threads
from siamcl.threads import cpu_threads


def _pool_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info()}


def test_every_pool_runs_on_the_threads_asked_for_then_is_restored():
    import numpy  # noqa: F401  (its BLAS pool is one of those limited)

    torch_before, pools_before = torch.get_num_threads(), _pool_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
        assert _pool_threads() == {1}
    assert torch.get_num_threads() == torch_before
    assert _pool_threads() == pools_before


def test_restored_when_the_block_raises():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"), cpu_threads(1):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_none_changes_nothing():
    before = torch.get_num_threads()
    with cpu_threads(None):
        assert torch.get_num_threads() == before


@pytest.mark.parametrize("threads", [0, -1, True, 1.5])
def test_threads_must_be_a_positive_integer(threads):
    with (
        pytest.raises(ValueError, match="threads must be a positive integer"),
        cpu_threads(threads),
    ):
        pass


def test_the_former_name_is_the_same_context():
    assert torch_threads is cpu_threads
