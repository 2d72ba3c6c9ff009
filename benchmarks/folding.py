"""What folding BatchNorm into the convolutions saves an inference pass: conv4 embedding
rows in siamcl's batches (128), unfolded against :func:`siamcl.training.folding.folded`,
channels-last weights both, at 8x8 (digits), 16x16 and 28x28 (mnist). One torch thread,
interleaved rounds, median CPU time. The folding itself (a torch.fx trace and copy) is
timed on its own, once a round, and the rows a pass needs to repay it are derived: what
:data:`siamcl.training.folding.FOLD_MIN_VALUES` is chosen from. Freed memory is retained as
the ``siamcl`` command retains it; ``SIAMCL_MALLOC=system`` measures the C library's default
(the record's ``malloc`` says which).

    python benchmarks/folding.py [--rounds 3] [--rows 4000] [--out DIR]
    SIAMCL_MALLOC=system python benchmarks/folding.py --out DIR
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from siamcl.encoders import build_encoder
from siamcl.reporting import markdown_table
from siamcl.reporting.records import record_markdown, timing_script
from siamcl.training import prefer_channels_last
from siamcl.training.embedding import EMBED_BATCH
from siamcl.training.folding import folded

SHAPES = {"8x8": (1, 8, 8), "16x16": (1, 16, 16), "28x28": (1, 28, 28)}


def _pass_s(model: torch.nn.Module, images: torch.Tensor) -> float:
    """CPU seconds of one pass over ``images`` in siamcl's embedding batches."""
    start = time.process_time()
    with torch.no_grad():
        for first in range(0, len(images), EMBED_BATCH):
            model(images[first : first + EMBED_BATCH])
    return time.process_time() - start


def measure(rounds: int, rows: int) -> list[dict[str, Any]]:
    """Median pass times per input size, unfolded and folded interleaved in every round."""
    results = []
    for name, shape in SHAPES.items():
        torch.manual_seed(0)
        model = prefer_channels_last(build_encoder("conv4", shape, 64)).eval()
        images = torch.randn(rows, *shape)
        fused = folded(model)  # the process's first trace is dearer: not a pass's cost
        samples: dict[str, list[float]] = {"unfolded": [], "folded": [], "fold": []}
        _pass_s(model, images[:EMBED_BATCH]), _pass_s(fused, images[:EMBED_BATCH])  # warm-up
        for _ in range(rounds):
            samples["unfolded"].append(_pass_s(model, images))
            start = time.process_time()
            fused = folded(model)
            samples["fold"].append(time.process_time() - start)
            samples["folded"].append(_pass_s(fused, images))
        unfolded, folded_s, fold_s = (statistics.median(samples[k]) for k in samples)
        saved_per_row = (unfolded - folded_s) / rows
        repaid_rows = fold_s / saved_per_row if saved_per_row > 0 else None
        results.append(
            {
                "input": name,
                "unfolded_s": unfolded,
                "folded_s": folded_s,
                "ratio": folded_s / unfolded,
                "fold_s": fold_s,
                "repaid_after_rows": repaid_rows,
                "repaid_after_values": None
                if repaid_rows is None
                else repaid_rows * images[0].numel(),
            }
        )
    return results


def render(results: dict[str, Any]) -> str:
    cells = [
        [
            r["input"],
            f"{r['unfolded_s']:.3f}",
            f"{r['folded_s']:.3f}",
            f"{r['ratio']:.2f}x",
            f"{r['fold_s'] * 1e3:.1f}",
            "never" if r["repaid_after_rows"] is None else f"{r['repaid_after_rows']:,.0f}",
            "never" if r["repaid_after_values"] is None else f"{r['repaid_after_values']:,.0f}",
        ]
        for r in results["rows"]
    ]
    settings = results["settings"]
    header = [
        "input",
        "unfolded CPU s",
        "folded CPU s",
        "folded / unfolded",
        "folding ms",
        "repaid after rows",
        "input values",
    ]
    return (
        "# An inference pass with BatchNorm folded into the convolutions\n\n"
        f"{record_markdown(results)}\n\n"
        f"CPU time (process) of one conv4 pass over {settings['rows']} rows in batches of "
        f"{EMBED_BATCH}, eval mode, no gradients, 1 torch thread, channels-last weights, median "
        f"of {settings['rounds']} interleaved rounds; the folding (a torch.fx trace and copy) "
        "timed once a round, median. A pass repays the folding once it embeds the rows given "
        "(the folding's time over the time it saves a row), or that many input values "
        "(rows times values a row). Absolute times hold for this machine only.\n\n"
        f"{markdown_table(header, cells)}\n"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = {"rows": (4000, "rows a pass embeds")}
    return timing_script("folding", __doc__.splitlines()[0], argv, options, measure, render)


if __name__ == "__main__":
    main()
