"""Trace replay: a production request log, time-compressed, through the same gateway.

Format (``datasets/traces/README.md``): CSV or JSON lines with ``timestamp`` (ISO 8601 or
epoch seconds), ``tenant``, ``plan``, ``prompt`` *or* ``prompt_hash`` (+ ``prompt_tokens``),
optional ``output_tokens``, ``intent`` and ``answer_key``.

Rows that logged only a hash keep their identity (equal hashes are equal prompts, so the exact
cache replays faithfully) but carry no meaning: they are marked *opaque* and the driver gives
them unrelated random embeddings, so a semantic cache can hit them only when the prompt is
identical — the honest reading of a hashed log.  Missing token counts are counted once per
distinct prompt (tiktoken files shipped with litellm; no network), missing output lengths
fall back to the intent's typical ``answer_tokens`` from the catalogue.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np

from .._validate import first_few
from ..catalogue import CatalogueFormatError, json_lines
from .traffic import DEFAULT_ANSWER_TOKENS, Traffic, _Tables

if TYPE_CHECKING:
    from ..catalogue import Catalogue


class TraceError(ValueError):
    """A trace file cannot be replayed; the message names the file, row and column."""


class TraceLineError(CatalogueFormatError, TraceError):
    """A JSON-lines trace line that is not a JSON object of UTF-8 text.

    Raised by the JSONL reader the datasets share (:func:`llmlab.catalogue.json_lines`), so a
    trace reports a bad line as every other JSONL file does, and is still a :class:`TraceError`.
    """


def _rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)``, ``where`` naming the row (:func:`_csv_rows`) or line; a file that is not
    UTF-8 is a TraceError naming the line."""
    rows = _parsed_rows(path)
    while True:
        try:
            where, row = next(rows)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise TraceError(f"{path}, line {_first_undecodable_line(path)}: not UTF-8 text ({exc.reason}); "
                             "save the trace as UTF-8 (Excel: 'CSV UTF-8')") from None
        yield where, row


def _first_undecodable_line(path: Path) -> int:
    """The line holding the first byte that is not UTF-8 (the text reader only knows its block)."""
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return n
    return n


def _parsed_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if _is_jsonl(path):  # the reader every JSONL dataset shares: line-numbered errors, a BOM is fine
        _refuse_json_array(path)
        for n, row in json_lines(path, TraceLineError):
            yield f"line {n}", row
    else:
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8" writes one) must not become part of the first column's name
        with open(path, encoding="utf-8-sig", newline="") as fh:
            yield from _csv_rows(path, fh)


def _refuse_json_array(path: Path) -> None:
    """A ``.json`` trace that is one JSON array (what most tools write as "JSON") said only
    ``line 1: invalid JSON: Expecting value`` (or ``got list``): say what the file is instead."""
    with open(path, "rb") as fh:
        start = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"["):
        raise TraceError(f"{path}: a JSON array; a JSON trace is JSON lines, one object per line (convert it with "
                         f"`jq -c '.[]' {path.name} > {path.stem}.jsonl`)")


def _csv_rows(path: Path, fh: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """``("row N", row)`` as :class:`csv.DictReader` gives them (the header is row 1, blank
    lines are skipped, missing cells are ``None``; ``"row N (line L)"`` where the row starts on
    another line of the file, after a blank line or a field holding line breaks, so that an
    editor finds it), but strict: a quote left open is an error
    naming its row instead of a field that swallows the rest of the file, a row with more cells
    than the header is one too (DictReader dropped them: an unquoted comma cut a prompt short and
    shifted the cells after it), and a field may hold up to :data:`MAX_FIELD_CHARS` characters."""
    reader = csv.reader(fh, strict=True)
    lines = 0  # physical lines consumed by the records read so far

    def record(n: int) -> list[str] | None:
        nonlocal lines
        start = lines + 1
        # the limit is process-wide: raised only while this file's reader parses a record
        old = csv.field_size_limit(MAX_FIELD_CHARS)
        try:
            rec = next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            raise TraceError(_csv_problem(path, n, start, exc)) from None
        finally:
            csv.field_size_limit(old)
        lines = reader.line_num
        return rec

    header = record(1)
    while header == []:
        header = record(1)
    fields = _column_names(path, header or [], "the header")
    missing = {"timestamp", "tenant", "plan"} - set(fields)
    if missing:
        shown = first_few([repr(h) for h in header or []], 12)
        raise TraceError(f"{path}: missing column(s) {sorted(missing)}; the header names {shown or 'nothing'} "
                         "(a trace is comma-separated, with a header row)")
    n = 2
    while True:
        line = lines + 1
        rec = record(n)
        if rec is None:
            return
        if not rec:  # a blank line
            continue
        where = f"row {n}" if line == n else f"row {n} (line {line})"
        row: dict[Any, Any] = dict(zip(fields, rec))
        if len(rec) > len(fields):  # even an empty extra cell: "hello, world" unquoted shifts the cells after it
            raise TraceError(f"{path}, {where}: {len(rec)} cells where the header names {len(fields)}: an "
                             "unquoted comma in a field? quote the field (\"…\")")
        else:
            for name in fields[len(rec):]:
                row[name] = None
        yield where, row
        n += 1


def _csv_problem(path: Path, n: int, line: int, exc: csv.Error) -> str:
    where = f"{path}, row {n} (line {line})"
    text = str(exc)
    if "end of data" in text:  # strict mode, the file ended inside a quoted field
        return (f"{where}: a quoted field is never closed: a '\"' opens a field in this row and the file ends "
                "before its closing quote (every later row would have been read into it); close the quote, "
                "or write a quote inside a field as '\"\"'")
    if "field limit" in text:
        return (f"{where}: a field is longer than {MAX_FIELD_CHARS:,} characters, the most a trace field may "
                "hold (an unclosed quote, or a prompt far past any model's context window?)")
    if "expected after" in text:  # "abc"def: text after a closing quote
        return (f"{where}: malformed CSV ({text}): a quoted field must end at its closing quote; write a "
                "quote inside a field as '\"\"'")
    return f"{where}: malformed CSV ({text})"


def _column_names(path: Path, names: list[str], where: str) -> list[str]:
    """The trace columns ``names`` stand for: a known column is matched ignoring case and the
    spaces around it (``Timestamp``, `` plan`` after ``, ``), as spreadsheets and SQL clients
    write headers; other names are kept as they are (ignored).  Before, ``Output_Tokens`` was an
    ignored extra column, and every row replayed the catalogue's typical answer length instead.
    Two names for one column are refused: one would silently win."""
    out, seen = [], {}
    for name in names:
        key = name.strip().lower()
        column = key if key in COLUMNS else name
        column = ALIASES.get(column, column)
        if column in COLUMNS:
            if column in seen:
                raise TraceError(f"{path}: {where} names the column {column!r} twice ({seen[column]!r} and {name!r}): "
                                 "keep one")
            seen[column] = name
        out.append(column)
    return out


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".ndjson", ".json")


#: token counts above this are a unit or logging mistake (no model's context window is near it)
MAX_TOKENS = 10_000_000
#: epoch seconds above this (the year 5138) are almost surely epoch milliseconds
MAX_EPOCH_S = 1e11
#: a trace replays one period of traffic; a longer span is an outlier row or a unit mistake
MAX_SPAN_S = 366 * 86_400.0
#: the longest text a trace field may hold, in characters (16 Mi; the csv module's default is 131,072)
MAX_FIELD_CHARS = 16 * 1024 * 1024
#: columns whose JSON value must be a string (or null): the same text a CSV cell holds
TEXT_COLUMNS = ("tenant", "plan", "prompt", "prompt_hash", "intent", "answer_key")
#: every column the replayer reads (``datasets/traces/README.md``); any other is ignored
COLUMNS = ("timestamp", *TEXT_COLUMNS[:4], "prompt_tokens", "output_tokens", "completion_tokens", "intent",
           "answer_key")
#: the providers' own name for a count, read as the trace's column (OpenAI's usage calls output
#: ``completion_tokens``, as llmlab's ledger does): ignored as an extra column, a log's real
#: answer lengths were replaced by the catalogue's typical ones, and its cost with them
ALIASES = {"completion_tokens": "output_tokens"}
_KNOWN = frozenset(c for c in COLUMNS if c not in ALIASES)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _tokens(row: Mapping[str, Any], column: str, where: str) -> int | None:
    """A token count: blank → None (not logged); else a whole number in [1, MAX_TOKENS]."""
    raw = row.get(column)
    if _blank(raw):
        return None
    try:
        value = math.nan if isinstance(raw, bool) else float(raw)  # JSON's true is not a count
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value.is_integer() and 1 <= value <= MAX_TOKENS):
        raise TraceError(f"{where}: {column} must be a whole number from 1 to {MAX_TOKENS:,} (got {raw!r})")
    return int(value)


def _check_json_text(row: Mapping[str, Any], where: str) -> None:
    """A JSON line's text columns hold strings (``null``, a missing key or ``NaN``: not logged) of
    real Unicode text: no lone surrogate (``"\\ud800"`` is valid JSON, but no UTF-8 can encode it)."""
    for column in TEXT_COLUMNS:
        value = row.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if not isinstance(value, str):
            kind = ("a boolean" if isinstance(value, bool) else "a number" if isinstance(value, (int, float))
                    else "a list" if isinstance(value, list) else "an object")
            got = json.dumps(value, ensure_ascii=True, allow_nan=True)
            got = got if len(got) <= 60 else got[:57] + "..."
            raise TraceError(f"{where}: {column} must be a JSON string or null (got {kind}, {got})")
        if len(value) > MAX_FIELD_CHARS:
            raise TraceError(f"{where}: {column} is {len(value):,} characters long, more than the "
                             f"{MAX_FIELD_CHARS:,} a trace field may hold")
        bad = _SURROGATE.search(value)
        if bad is not None:
            raise TraceError(f"{where}: {column} holds a lone surrogate \\u{ord(bad.group()):04x} at character "
                             f"{bad.start() + 1:,}: not Unicode text (a \\ud800-\\udfff escape must be half of a "
                             "pair that encodes one character)")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or \
        (isinstance(value, float) and math.isnan(value))


# ISO 8601 / RFC 3339 date-times as logs write them, extended (2025-03-04T09:00:13.785Z) or basic
# (20250304T090013Z): any number of fraction digits ('.' or ','), 'Z'/'z' or ±HH[:MM]/±HHMM, or
# ' UTC'/' GMT' (BigQuery's CSV export writes '2025-03-04 09:00:13.785 UTC').
# Parsed here rather than by datetime.fromisoformat, which on Python 3.10 accepts only what
# isoformat() writes (3 or 6 fraction digits, ±HH:MM) and so refused traces 3.11+ replays:
# a trace must replay the same on every Python the package supports.
_ISO_DATETIME = re.compile(
    r"(?P<y>\d{4})(?P<dash>-?)(?P<mo>\d{2})(?P=dash)(?P<d>\d{2})"
    r"(?:[Tt ](?P<h>\d{2})(?:(?P<colon>:?)(?P<mi>\d{2})(?:(?P=colon)(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?)?)?"
    r"\s*(?P<tz>[Zz]|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?")


def _parse_iso(text: str) -> datetime:
    """An ISO 8601 date-time, the same on every Python version; ValueError if it is not one."""
    m = _ISO_DATETIME.fullmatch(text)
    if m is None:  # week/ordinal dates too: 3.11+ would take them, 3.10 not; refused on all
        raise ValueError(f"not an ISO 8601 date-time: {text!r}")
    g = m.groupdict()
    micro = int((g["f"] or "")[:6].ljust(6, "0"))  # nanoseconds are truncated, as 3.11+ does
    tz = None
    if g["tz"]:
        if g["tz"] in ("Z", "z", "UTC", "GMT"):  # " UTC": BigQuery's CSV export writes it
            tz = timezone.utc
        else:
            digits = g["tz"][1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            tz = timezone(-offset if g["tz"][0] == "-" else offset)  # ValueError beyond ±24 h
    return datetime(int(g["y"]), int(g["mo"]), int(g["d"]), int(g["h"] or 0), int(g["mi"] or 0),
                    int(g["s"] or 0), micro, tzinfo=tz)


def parse_timestamp(value: Any) -> float:
    """ISO 8601 (``Z`` or an offset; none means UTC) or epoch seconds → epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    dt = _parse_iso(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _check_speedup(path: Path, speedup: float, span: float) -> None:
    """The replayed span ``span / speedup`` must stay within the simulator's 366 days (a speedup of
    1e-300 stretched a one-hour trace to 1e303 s).  No floor: the scenario's bound on the speedup
    (a million) keeps a compressed span of real time far above the clock's resolution."""
    compressed = span / speedup
    # the 1e-12 slack: a speedup computed as exactly span / limit must not fail on its last bit
    if compressed > MAX_SPAN_S * (1 + 1e-12):
        raise TraceError(f"{path}: traffic.speedup {speedup:g} stretches the trace's {_duration(span)} to "
                         f"{compressed / 86_400:,.4g} days, past the simulator's 366: use a speedup of at least "
                         f"{_sig(span / MAX_SPAN_S)}")


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:,.4g} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:,.4g} hours"
    return f"{seconds:,.4g} s"


def _sig(x: float, digits: int = 3) -> str:
    """``x`` rounded up to ``digits`` significant digits (so that the advice is inside the limit)."""
    exponent = math.floor(math.log10(x))
    scale = 10.0 ** (exponent - digits + 1)
    y = math.ceil(x / scale - 1e-9) * scale  # the 1e-9 slack: 100.00000000000001 is 100 steps, not 101
    if not 1e-6 <= y < 1e9:
        return f"{y:.{digits}g}"
    text = f"{y:,.{max(0, digits - 1 - exponent)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


#: the trace shipped with llmlab (``llmlab/data/traces``; ``datasets/traces`` in a source checkout)
EXAMPLE_TRACE = "example_trace.csv"


def shipped_trace(name: str | os.PathLike[str]) -> Path | None:
    """The trace shipped with the package under the bare file name ``name``, or None.

    An installed llmlab has no ``datasets/`` folder where it is run, so the example trace the
    documentation replays (``--trace datasets/traces/example_trace.csv``) was reachable only by
    its site-packages path; ``--trace example_trace.csv`` (or ``traffic.trace``) now finds it.
    Only a bare name is looked up: a path with a folder in it means a file of the caller's."""
    from ..catalogue import dataset_path

    if len(Path(name).parts) != 1:
        return None
    try:
        return dataset_path(f"traces/{Path(name).name}")
    except FileNotFoundError:
        return None


def trace_identity(path: Path) -> str:
    """What a summary names a replayed trace by: its file name and the start of its content's
    SHA-256.  Not its path: a path depends on where the run was started and how the file was named
    (``--trace`` resolves it, ``simulate(trace=…)`` keeps it as given), so one replay's
    ``summary.json`` differed between machines and working directories — while the digest tells
    two versions of a log with the same name apart."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{path.name} (sha256:{digest.hexdigest()[:16]})"


def load_trace(path: str | Path, *, speedup: float = 1.0, requests: int | None = None, hours: float | None = None,
               system_prompt_tokens: int = 0, catalogue: "Catalogue | None" = None) -> Traffic:
    """Read a trace into :class:`~llmlab.sim.traffic.Traffic`, arrivals divided by ``speedup``."""
    from ..catalogue import load_catalogue
    from ..tokens import count_tokens

    path = Path(path)
    if path.is_dir():
        raise TraceError(f"{str(path)!r} is a folder: a trace is a CSV or JSONL file")
    if not path.is_file():
        raise TraceError(f"trace file {str(path)!r} does not exist")
    try:
        ok = not isinstance(speedup, bool) and math.isfinite(float(speedup)) and float(speedup) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise TraceError(f"traffic.speedup must be a finite number above 0 (got {speedup!r})")
    speedup = float(speedup)
    try:
        cat = catalogue or load_catalogue()
    except FileNotFoundError:
        cat = None
    tables = _Tables()
    counted: dict[str, int] = {}
    rows = []
    jsonl = _is_jsonl(path)
    for at, row in _rows(path):
        where = f"{path}, {at}"
        if jsonl:
            if not _KNOWN.issuperset(row):  # only a line with another key pays for the renaming
                row = dict(zip(_column_names(path, list(row), at), row.values()))
            _check_json_text(row, where)
        try:
            ts = parse_timestamp(row.get("timestamp"))
        except (TypeError, ValueError, OverflowError):
            raise TraceError(f"{where}: timestamp {row.get('timestamp')!r} is not ISO 8601 or epoch seconds") from None
        if not (math.isfinite(ts) and ts >= 0):
            raise TraceError(f"{where}: timestamp must be a finite time at or after 1970-01-01 (got {row.get('timestamp')!r})")
        if ts > MAX_EPOCH_S:
            raise TraceError(f"{where}: timestamp {row.get('timestamp')!r} is beyond the year 5138 (1e11 s): "
                             "epoch milliseconds? timestamps are epoch seconds or ISO 8601")
        tenant, plan = row.get("tenant"), row.get("plan")
        if _blank(tenant) or _blank(plan):
            blank = " and ".join(c for c, v in (("tenant", tenant), ("plan", plan)) if _blank(v))
            raise TraceError(f"{where}: {blank} is empty; every row needs a tenant and a plan")
        # names, not text: the spaces of an "a, b" row are not part of them (" paid" matched no plan's cap)
        tenant, plan = str(tenant).strip(), str(plan).strip()
        prompt, digest = row.get("prompt"), row.get("prompt_hash")
        answer_key = None if _blank(row.get("answer_key")) else str(row["answer_key"]).strip()
        intent_name = None if _blank(row.get("intent")) else str(row["intent"]).strip()
        if intent_name is None and answer_key is not None:
            intent_name = answer_key.split("|", 1)[0]  # an answer key starts with its intent
        intent = cat.by_id(intent_name) if cat is not None and intent_name in (cat or ()) else None
        ptok, otok = _tokens(row, "prompt_tokens", where), _tokens(row, "output_tokens", where)
        if not _blank(prompt):
            text, opaque = str(prompt), False
            if ptok is None:
                if text not in counted:
                    counted[text] = count_tokens(text) + 7 + system_prompt_tokens
                ptok = counted[text]
        elif not _blank(digest):
            digest = str(digest).strip().lower()
            if not _SHA256.fullmatch(digest):
                raise TraceError(f"{where}: prompt_hash must be a SHA-256 hex digest (64 hex digits), got {digest[:80]!r}")
            text, opaque = f"<prompt sha256:{digest}>", True
            if ptok is None:
                raise TraceError(f"{where}: prompt_tokens is required when only prompt_hash is logged")
        else:
            raise TraceError(f"{where}: needs prompt or prompt_hash")
        if otok is None:
            otok = intent.answer_tokens if intent is not None else DEFAULT_ANSWER_TOKENS
        # Unlabelled (no intent, no answer_key): only the same prompt shares an answer, and the turn's
        # intent is that key, so that a hit is judged as it is for a labelled row (a false hit is a
        # cached answer of another intent).  Every hit of such a trace counted as false, exact ones
        # too, when its intent was "unknown" and the cached answer's key the prompt.
        key = answer_key or intent_name or "prompt:" + text.replace("|", "\N{BROKEN BAR}")
        tid = tables.text_id(text, ptok)
        rows.append((ts, tables.tenant_id(tenant, plan), tid, opaque,
                     tables.key_id(key, intent.answer if intent is not None else ""),
                     tables.intent_id(intent_name or key, intent.category if intent else "general",
                                      intent.lang if intent else "en", intent.action if intent else None),
                     ptok, otok))
    if not rows:
        raise TraceError(f"{path}: no rows")
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0]
    if rows[-1][0] - t0 > MAX_SPAN_S:
        raise TraceError(f"{path}: timestamps span {(rows[-1][0] - t0) / 86_400:,.0f} days (at most 366): an outlier "
                         f"row or a unit mistake? the earliest is {t0!r}, the latest {rows[-1][0]!r}")
    _check_speedup(path, speedup, rows[-1][0] - t0)
    arrival = np.array([(r[0] - t0) / speedup for r in rows])
    keep = len(rows)
    if hours is not None:
        keep = int(np.searchsorted(arrival, hours * 3600.0))
    if requests is not None:
        keep = min(keep, int(requests))
    rows, arrival = rows[:keep], arrival[:keep]
    if not rows:
        raise TraceError(f"{path}: no rows inside the requested window")
    cols = np.array([r[1:3] + r[4:] for r in rows], dtype=np.int64).reshape(len(rows), 6)
    traffic = tables.build(arrival_s=arrival, tenant=cols[:, 0].astype(np.int32), text=cols[:, 1].astype(np.int32),
                           key=cols[:, 2].astype(np.int32), intent=cols[:, 3].astype(np.int32),
                           prompt_tokens=cols[:, 4].astype(np.int32), answer_tokens=cols[:, 5].astype(np.int32),
                           prev=np.full(len(rows), -1, dtype=np.int32), session=np.arange(len(rows), dtype=np.int32),
                           # --hours past the trace's last request would add idle time, not traffic
                           horizon_s=max(float(arrival[-1]), 1e-9) if hours is None
                           else min(hours * 3600.0, max(float(arrival[-1]), 1e-9)))
    traffic.opaque = {r[2] for r in rows if r[3]}
    traffic.source = trace_identity(path)
    traffic.epoch0 = t0
    return traffic
