"""Every repository path that README.md and docs/*.md name exists: the targets of relative
markdown links, and paths (backticked or plain) that start at a top-level entry of the
repository."""

import glob
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
# The repository's own top-level entries (not build/ or runs/, which hold outputs).
TOP_LEVEL = {".ci", "benchmarks", "bindings", "cpp", "cuda", "docs", "python", "tests", "CMakeLists.txt", "LICENSE",
             "README.md", "pyproject.toml"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`]+)`")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def named_paths(doc: Path) -> list[tuple[str, Path]]:
    """(as written, where it points) for each link and backticked repository path of doc."""
    text = FENCE.sub("", doc.read_text())  # code blocks hold commands, not references
    found = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # URLs and anchors within the page
        found.append((target, doc.parent / target.split("#")[0]))
    for span in CODE.findall(text):
        for word in span.split():  # a command names its script: `python benchmarks/gemm.py --x`
            path = word.strip("(),;:'\"")
            if path.split("/")[0] in TOP_LEVEL and ("/" in path or "." in path):
                found.append((word, ROOT / path))
    dirs = "|".join(re.escape(t) for t in TOP_LEVEL if "." not in t)
    for written in re.findall(rf"(?<![\w/.$~-])((?:{dirs})/[\w./*-]*)", CODE.sub("", text)):  # plain-text paths
        found.append((written, ROOT / written.rstrip(".,;:")))
    return found


def test_the_docs_exist():
    assert DOCS[0].is_file() and len(DOCS) > 1
    for name in ("design.md", "integer-finetuning.md", "int4-training.md", "gpu.md"):
        assert (ROOT / "docs" / name).is_file(), name
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_named_path_exists(doc):
    missing = [written for written, path in named_paths(doc)
               if not (glob.glob(str(path)) if any(c in str(path) for c in "*?[") else path.exists())]
    assert not missing, f"{doc.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_no_reference_to_documents_outside_the_repository():
    # The papers' notes and the shared design document this project started from are not in the
    # repository; the docs/ pages replace them.
    stale = re.compile(r"specs/(int4-training|integer-finetuning|qbert-meft-qdylora)\.md|DESIGN\.md")
    sources = [p for d in ("python", "cpp", "cuda", "bindings", "tests", "benchmarks", "docs")
               for p in (ROOT / d).rglob("*") if p.is_file() and p.suffix in (".py", ".h", ".cpp", ".cu", ".md", ".sh")]
    offenders = [str(p.relative_to(ROOT)) for p in sources + [ROOT / "README.md"]
                 if p != Path(__file__).resolve() and stale.search(p.read_text(errors="replace"))]
    assert not offenders, offenders
