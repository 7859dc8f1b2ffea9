"""The documentation's links resolve: every relative link names a file of the repository and,
where it has an ``#anchor``, a heading of that file (GitHub's slugs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "THREAT_MODEL.md", *sorted((ROOT / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)  # no "# comments" of code blocks
    return {slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    broken = []
    for link in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in headings(target):
            broken.append(f"{link}: no such heading")
    assert not broken, broken


def test_the_code_cites_only_documents_of_the_repository():
    cited = set()
    for source in [
        *ROOT.glob("*_app/**/*.py"),
        *ROOT.glob("hkms_site/**/*.py"),
        *ROOT.glob("hkms_core/**/*.py"),
        *ROOT.glob("bench/*.py"),
    ]:
        cited.update(re.findall(r"\b([A-Z_]+\.md|docs/[\w\-/]+\.md)\b", source.read_text()))
    missing = sorted(name for name in cited if not (ROOT / name).exists())
    assert not missing, f"cited but not in the repository: {missing}"


CODE_PATH = re.compile(r"\b((?:hkms_core|hkms_site|keys_app|secrets_app|tests|bench|scripts)(?:/[\w.*\-]+)+)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_source_file_exists(doc):
    """A path of the repository named in the docs (``keys_app/services/material.py``) exists: code
    that moves takes its documentation along.  Globs (``tests/test_bench_*quick.py``) match a file."""
    missing = []
    for path in set(CODE_PATH.findall(doc.read_text())):
        path = path.rstrip(".")
        if not (list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()):
            missing.append(path)
    assert not missing, missing
