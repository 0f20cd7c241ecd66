"""Packaging hook: a built wheel carries the datasets the library reads by default.

The repository keeps them in ``datasets/`` (next to their generators and READMEs); an installed
wheel has no such folder, so ``build_py`` copies the files :func:`llmlab.catalogue.dataset_path`
and the scenario loader look up into ``llmlab/data/``.  An editable install (``pip install -e .``)
reads ``datasets/`` in place and copies nothing.  Everything else is in ``pyproject.toml``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: what the library loads at run time, relative to datasets/ (generators and notes stay in the repo)
SHIPPED = ("intents.jsonl", "pairs.jsonl", "providers/*.toml", "embeddings/*.npz", "traces/*.csv", "traces/*.jsonl")
#: what every preset (and the documented example trace) reads: a build without one of them fails
REQUIRED = ("intents.jsonl", "pairs.jsonl", "providers/*.toml", "embeddings/*.npz", "traces/example_trace.csv")


class BuildPyWithDatasets(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = Path(__file__).resolve().parent / "datasets"
        target = Path(self.build_lib) / "llmlab" / "data"
        for pattern in REQUIRED:  # a wheel without them installs, then fails on every preset: refuse to build it
            if not any(source.glob(pattern)):
                raise FileNotFoundError(f"building llmlab needs datasets/{pattern} (from the repository or its "
                                        f"sdist; MANIFEST.in lists what an sdist carries): none in {source}")
        for pattern in SHIPPED:
            for path in sorted(source.glob(pattern)):
                copy = target / path.relative_to(source)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)


setup(cmdclass={"build_py": BuildPyWithDatasets})
