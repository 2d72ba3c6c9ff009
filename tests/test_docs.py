"""The Python examples of the user guide and the README run as written.

Each document's ```python blocks are executed in order in one namespace (later blocks use
earlier ones' names), inside a temporary working directory, so any file an example writes
stays out of the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("docs/guide.md", "docs/avalanche.md", "README.md")
_PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[str]:
    """The source of every fenced ```python block of a markdown text, in order."""
    return [match.group(1) for match in _PYTHON_BLOCK.finditer(text)]


def test_python_blocks_are_found_in_order() -> None:
    text = "intro\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a + 1\n```\n"
    assert python_blocks(text) == ["a = 1\n", "b = a + 1\n"]


def test_guide_has_examples() -> None:
    assert len(python_blocks((ROOT / "docs/guide.md").read_text())) >= 5


@pytest.mark.parametrize("document", DOCUMENTS)
def test_document_examples_run(
    document: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ROOT / document
    if not path.is_file():
        pytest.skip(f"{document} is not in this checkout")
    blocks = python_blocks(path.read_text())
    if not blocks:
        pytest.skip(f"{document} has no python examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for number, source in enumerate(blocks, start=1):
        code = compile(source, f"{document} python block {number}", "exec")
        exec(code, namespace)  # noqa: S102 - running the documentation is the point


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(text: str) -> list[str]:
    """The targets of a markdown text's links that are paths in the repository (no scheme,
    no bare anchor), without their anchors."""
    targets = [match.group(1).split("#")[0] for match in _LINK.finditer(text)]
    return [target for target in targets if target and "://" not in target]


def test_relative_links_are_found() -> None:
    text = "[a](docs/a.md#x) [b](https://example.org) [c](#here) ![d](d.png)"
    assert relative_links(text) == ["docs/a.md", "d.png"]


@pytest.mark.parametrize(
    "document",
    ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))],
)
def test_relative_links_point_at_files(document: str) -> None:
    path = ROOT / document
    broken = [
        target for target in relative_links(path.read_text()) if not (path.parent / target).exists()
    ]
    assert not broken, f"{document} links to missing files: {broken}"
