"""A figure written to a file as the same bytes every time it is drawn the same.

A seed reproduces a run's numbers, and so its figures; but matplotlib stamps the vector
formats with the moment they were written (a PDF's ``CreationDate``, an SVG's ``dc:date``, a
PostScript ``%%CreationDate`` comment, the gzip header of an ``.svgz``) and names an SVG's clip
paths and markers with a salt it draws from ``uuid4`` for each file.  Two runs of one sweep wrote
``--plot sweep.pdf`` (or ``.svg``) files that differed, so a diff, a content hash or a build
cache could not tell that nothing had changed.  Here the dates are left out and the SVG salt is
fixed; a PNG (which carries only matplotlib's version) and the raster formats are unchanged.
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any

#: the ``metadata`` that leaves the write time out, per format matplotlib takes it for
_UNDATED = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "svgz": {"Date": None}}
#: the salt of an SVG's element ids (matplotlib's ``svg.hashsalt``; None draws a uuid4 per file)
SVG_SALT = "llmlab"
_PS_DATE = re.compile(rb"^%%CreationDate:[^\n]*\n", re.MULTILINE)


def save_figure(fig: Any, path: str | Path, *, dpi: float = 110) -> None:
    """``fig.savefig(path, dpi=dpi)`` in the format ``path``'s extension names, without the write
    time and with fixed SVG ids: the same figure gives the same bytes."""
    import matplotlib

    path = Path(path)
    fmt = path.suffix[1:].lower()
    with matplotlib.rc_context({"svg.hashsalt": SVG_SALT}):
        fig.savefig(path, dpi=dpi, metadata=_UNDATED.get(fmt))
    if fmt in ("ps", "eps"):  # PostScript takes no date in its metadata: the comment is removed
        path.write_bytes(_PS_DATE.sub(b"", path.read_bytes(), count=1))
    elif fmt == "svgz":  # gzip writes the time into its header: written again with none
        path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), mtime=0))
