"""siamcl.allocator: freed blocks kept for reuse (glibc), and the ``siamcl`` command's switch."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from siamcl import allocator

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# Embed 1,024 images in batches of 128 twice with conv4 as it trains (BatchNorm unfolded); count
# the second pass's minor page faults.
REFILL = """
import resource, sys
import torch
if sys.argv[1] == "retained":
    from siamcl.allocator import retain_freed_memory
    assert retain_freed_memory()
from siamcl.encoders import build_encoder
torch.set_num_threads(1)
encoder, images = build_encoder("conv4", (1, 28, 28)).eval(), torch.rand(1024, 1, 28, 28)
def embedding_pass():  # conv4 as it trains, BatchNorm unfolded: its largest activations
    with torch.no_grad():
        for start in range(0, len(images), 128):
            encoder(images[start : start + 128])
embedding_pass()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
embedding_pass()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _refill_faults(setting: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", REFILL, setting], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip())


@glibc_only
def test_retained_memory_is_reused_without_page_faults():
    # a batch's first activation is 25 MiB (6,400 pages); the system setting hands such
    # blocks back and faults their pages in again, batch after batch (about 100,000-150,000
    # faults a pass on the machine measured); retained, the pages are reused: under 200
    # faults, or one block's 6,400 more on an occasional pass whose heap needed one more
    # block (6,448 seen once in a clean-clone run)
    system, retained = _refill_faults("system"), _refill_faults("retained")
    assert system > 20_000
    assert retained <= 6_400 + 200 and retained < system / 10


@glibc_only
def test_retain_reports_its_setting(monkeypatch):
    monkeypatch.setitem(allocator._state, "setting", "system")
    assert allocator.retain_freed_memory()
    assert allocator.allocator_setting().startswith("retained")


def test_the_environment_can_keep_the_system_setting(monkeypatch):
    monkeypatch.setitem(allocator._state, "setting", "system")
    monkeypatch.setenv("SIAMCL_MALLOC", "system")
    assert allocator.retain_unless_disabled() is False
    assert allocator.allocator_setting() == "system"


@pytest.mark.parametrize("limit", [0, -5, 1.5, "1GiB", True, 1 << 30])
def test_a_limit_must_be_a_positive_number_of_bytes(limit):
    with pytest.raises(ValueError, match="limit must be a positive number of bytes under 1 GiB"):
        allocator.retain_freed_memory(limit)


def test_result_records_name_the_setting():
    from siamcl.reporting.records import machine_info

    assert machine_info()["malloc"] == allocator.allocator_setting()
