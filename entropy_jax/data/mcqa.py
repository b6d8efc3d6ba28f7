"""Multiple-choice questions (Chapter 3): one schema, local-file loaders, the shipped demo set,
and the public benchmarks through the optional `datasets` library.

Every source becomes a list of `Question`. Sources `load` accepts:

- a local file: `.jsonl` (one JSON object per line), `.json` (a JSON array of the same objects)
  or `.csv` (layouts in `load_csv`);
- `"demo"`: `entropy_jax/data/mcqa_demo.jsonl`, shipped inside the package (generated offline by
  `data/make_mcqa_demo.py`; a "knowledge" and a "reasoning" stratum);
- a benchmark name in `BENCHMARKS` (`mmlu`, `mmlu-pro`, `gpqa` (diamond), `gpqa-main`, `arc-challenge`,
  `commonsenseqa`): read from the Hugging Face Hub when `datasets` is installed and the Hub can be
  reached. `datasets` is not a dependency of this package; without it (or offline), export the
  questions to JSONL and pass the file.

JSON object fields (JSONL and `.json`):

  question (str, required), options (list of str, required; `choices` is accepted as an alias),
  answer (required: 0-based int index, or a letter "A".."Z"), id (str; default
  "<file stem>-<line>"), subject, stratum, rationale (str or null), permutation (list of int or
  null). Other keys are ignored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from entropy_jax import _validate

__all__ = [
    "BENCHMARKS",
    "DEMO_PATH",
    "LABELS",
    "MAX_OPTIONS",
    "STRATA",
    "DatasetUnavailableError",
    "Question",
    "check_unique_ids",
    "content_hash",
    "identity",
    "label_index",
    "load",
    "load_csv",
    "load_json",
    "load_jsonl",
    "option_labels",
    "option_permutation",
    "save_jsonl",
    "shuffle_options",
]

# Both styles stop at 26 so that every valid `Question` can be rendered in either style.
MAX_OPTIONS = 26
LABELS: dict[str, tuple[str, ...]] = {
    "letters": tuple(string.ascii_uppercase),
    "numbers": tuple(str(i) for i in range(1, MAX_OPTIONS + 1)),
}
STRATA = ("knowledge", "reasoning")

# package data (pyproject `package-data`), so a wheel install finds it too
DEMO_PATH = Path(__file__).resolve().parent / "mcqa_demo.jsonl"

_OPTIONAL_STR = ("subject", "stratum", "rationale")


def option_labels(n: int, style: str = "letters", *, qid: str | None = None) -> tuple[str, ...]:
    """The labels of n options: ("A", "B", ...) for "letters" (our default) or ("1", "2", ...)
    for "numbers" (the Chapter-3 paper's prompt). `qid` only names the question in errors."""
    if style not in LABELS:
        raise ValueError(f"label style must be one of {sorted(LABELS)}; got {style!r}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of options must be a positive int; got {n!r}.")
    labels = LABELS[style]
    if n > len(labels):
        who = f"question {qid!r} has" if qid is not None else "got"
        raise ValueError(f"{who} {n} options, but the {style} style has only {len(labels)} labels "
                         f"({labels[0]}..{labels[-1]}).")
    return labels[:n]


def label_index(label: str, style: str = "letters") -> int:
    """The 0-based option index of a label ("C" → 2 for letters, "3" → 2 for numbers)."""
    if style not in LABELS:
        raise ValueError(f"label style must be one of {sorted(LABELS)}; got {style!r}.")
    key = label.strip().upper() if isinstance(label, str) else label
    try:
        return LABELS[style].index(key)
    except ValueError:
        raise ValueError(f"{label!r} is not a {style} label ({LABELS[style][0]}..{LABELS[style][-1]}).") from None


@dataclass(frozen=True)
class Question:
    """One multiple-choice question.

    Attributes:
      id: unique within a set (e.g. "know-0001", "mmlu-test-00042").
      question: the question text, without the options.
      options: the option texts in presentation order (2 to 26, none empty).
      answer: 0-based index of the correct option in `options`.
      subject: topic, e.g. "geography" or an MMLU subject; None when unknown.
      stratum: the difficulty kind used to split results: "knowledge" (recall of a fact) or
        "reasoning" (multi-step computation); None when unassigned.
      rationale: a step-by-step explanation ending at the answer; None when not available.
      permutation: for options shuffled at load time (GPQA): `options[i]` is the source's option
        `permutation[i]` (the source lists the correct one first); None when the source order is
        kept.
    """

    id: str
    question: str
    options: tuple[str, ...]
    answer: int
    subject: str | None = None
    stratum: str | None = None
    rationale: str | None = None
    permutation: tuple[int, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError(f"question id must be a non-empty string; got {self.id!r}.")
        qid = self.id
        if not isinstance(self.question, str):
            raise ValueError(f"question {qid!r}: the question text must be a string; got {type(self.question).__name__}.")
        if not self.question.strip():
            raise ValueError(f"question {qid!r}: the question text is empty.")
        if isinstance(self.options, str | bytes) or not isinstance(self.options, Sequence):
            raise ValueError(f"question {qid!r}: options must be a list of strings; got {type(self.options).__name__}.")
        # Lists from JSON become tuples: a frozen Question stays hashable and immutable.
        object.__setattr__(self, "options", tuple(self.options))
        n = len(self.options)
        if n < 2:
            raise ValueError(f"question {qid!r}: needs at least 2 options; got {n}.")
        if n > MAX_OPTIONS:
            raise ValueError(f"question {qid!r} has {n} options; at most {MAX_OPTIONS} can be labelled "
                             f"(A..Z or 1..{MAX_OPTIONS}).")
        for i, opt in enumerate(self.options):
            if not isinstance(opt, str):
                raise ValueError(f"question {qid!r}: option {i} must be a string; got {type(opt).__name__} {opt!r}.")
            if not opt.strip():
                raise ValueError(f"question {qid!r}: option {i} is an empty string.")
        if isinstance(self.answer, bool) or not isinstance(self.answer, int):
            raise ValueError(f"question {qid!r}: answer must be a 0-based int index; got {self.answer!r}.")
        if not 0 <= self.answer < n:
            raise ValueError(f"question {qid!r}: answer index {self.answer} is out of range for {n} options "
                             f"(0..{n - 1}).")
        for name in _OPTIONAL_STR:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"question {qid!r}: {name} must be a string or None; got {value!r}.")
        if self.permutation is not None:
            perm = tuple(self.permutation)
            if sorted(perm) != list(range(n)) or any(isinstance(p, bool) for p in perm):
                raise ValueError(f"question {qid!r}: permutation must list 0..{n - 1} once each; got {perm}.")
            object.__setattr__(self, "permutation", perm)

    @property
    def answer_text(self) -> str:
        return self.options[self.answer]

    def labels(self, style: str = "letters") -> tuple[str, ...]:
        """This question's option labels in `style` ("letters" or "numbers")."""
        return option_labels(len(self.options), style, qid=self.id)

    def answer_label(self, style: str = "letters") -> str:
        return self.labels(style)[self.answer]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in field order; optional fields that are None are left out."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Question:
        """The inverse of `to_dict`; also accepts `choices` for `options` and a letter answer."""
        return _question_from_row(d, default_id=None)


def _question_from_row(row: Any, *, default_id: str | None, digit_answers: bool = False) -> Question:
    if not isinstance(row, Mapping):
        raise ValueError(f"expected a JSON object; got {type(row).__name__}.")
    if "question" not in row:
        raise ValueError("missing field 'question'.")
    if "options" in row:
        options = row["options"]
    elif "choices" in row:
        options = row["choices"]
    else:
        raise ValueError("missing field 'options' (a list of option strings).")
    if isinstance(options, str | bytes) or not isinstance(options, Sequence):
        raise ValueError(f"field 'options' must be a list of strings; got {type(options).__name__}.")
    if "answer" not in row:
        raise ValueError("missing field 'answer' (0-based index or letter).")
    answer = _parse_answer(row["answer"], digit_strings=digit_answers)
    qid = row.get("id", default_id)
    if qid is None:
        raise ValueError("missing field 'id'.")
    if not isinstance(qid, str):
        raise ValueError(f"field 'id' must be a string; got {qid!r}.")
    perm = row.get("permutation")
    if perm is not None and (isinstance(perm, str) or not isinstance(perm, Sequence)
                             or not all(isinstance(p, int) for p in perm)):
        raise ValueError(f"field 'permutation' must be a list of ints; got {perm!r}.")
    return Question(id=qid, question=row["question"], options=tuple(options), answer=answer,
                    subject=row.get("subject"), stratum=row.get("stratum"), rationale=row.get("rationale"),
                    permutation=None if perm is None else tuple(perm))


def _parse_answer(value: Any, *, digit_strings: bool) -> int:
    if isinstance(value, bool):
        raise ValueError(f"field 'answer' must be a 0-based index or a letter; got {value!r}.")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        s = value.strip()
        if len(s) == 1 and s.upper() in LABELS["letters"]:
            return LABELS["letters"].index(s.upper())
        # Only CSV cells hold indices as text; a JSON "2" could as well be the 1-based label 2.
        if digit_strings and s.isdigit():
            return int(s)
    raise ValueError(f"field 'answer' must be a 0-based index or a letter A..Z; got {value!r}.")


def check_unique_ids(questions: Iterable[Question]) -> None:
    """Raises ValueError naming the first id that occurs twice (with both 1-based positions)."""
    seen: dict[str, int] = {}
    for i, q in enumerate(questions, 1):
        if q.id in seen:
            raise ValueError(f"duplicate question id {q.id!r} (questions {seen[q.id]} and {i}).")
        seen[q.id] = i


def content_hash(q: Question) -> str:
    """A short content key of a question: 16 hex digits of the SHA-256 of its `to_dict()` as canonical JSON
    (id, text, options, answer, subject, stratum, rationale, permutation). Stores record it with every row, so
    a resume recognises a question edited under the same id."""
    text = json.dumps(q.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def identity(questions: Iterable[Question], source: str | os.PathLike | None = None) -> dict[str, Any]:
    """What a run read from a question set: {"source", "questions": {id: content_hash}} in load order
    (`stores.check_inputs` names the ids that changed)."""
    return {"source": None if source is None else str(source),
            "questions": {q.id: content_hash(q) for q in questions}}


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"question file not found: {p}")
    return p


def _collect(path: Path, rows: Iterable[tuple[int, Any]], *, digit_answers: bool = False) -> list[Question]:
    questions: list[Question] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        try:
            q = _question_from_row(row, default_id=f"{path.stem}-{line}", digit_answers=digit_answers)
        except ValueError as e:
            raise ValueError(f"{path}, line {line}: {e}") from None
        if q.id in first_line:
            raise ValueError(f"{path}, line {line}: duplicate question id {q.id!r} (first on line {first_line[q.id]}).")
        first_line[q.id] = line
        questions.append(q)
    if not questions:
        # An empty set would only fail much later, inside the metrics of a finished run.
        raise ValueError(f"{path}: no questions (the file holds no question rows).")
    return questions


def load_jsonl(path: str | os.PathLike) -> list[Question]:
    """Questions from a JSONL file: one JSON object per line (fields in the module docstring);
    blank lines are skipped. The file must be UTF-8 and hold at least one question. Errors name
    the file and the 1-based line."""
    p = _check_file(path)
    text = _validate.read_text(p)  # UTF-8 (BOM allowed); bad bytes name the line

    def rows():
        # Universal newlines, as a text-mode file would split them.
        for line, row_text in enumerate(io.StringIO(text, newline=None), 1):
            if not row_text.strip():
                continue
            try:
                yield line, json.loads(row_text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}, line {line}: invalid JSON ({e.msg} at column {e.colno}).") from None

    return _collect(p, rows())


def load_json(path: str | os.PathLike) -> list[Question]:
    """Questions from a `.json` file holding one JSON array of question objects (UTF-8, at least
    one question).

    Line numbers in errors are where each object starts."""
    p = _check_file(path)
    text = _validate.read_text(p)  # UTF-8 (BOM allowed); bad bytes name the line
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}, line {e.lineno}: invalid JSON ({e.msg} at column {e.colno}).") from None
    if not isinstance(data, list):
        raise ValueError(f"{p}, line 1: expected a JSON array of question objects; got {type(data).__name__}.")
    # json does not report positions of parsed values; a raw_decode pass over the array recovers them.
    lines = _json_array_item_lines(text)
    return _collect(p, ((lines[i] if i < len(lines) else 1, row) for i, row in enumerate(data)))


def _json_array_item_lines(text: str) -> list[int]:
    decoder = json.JSONDecoder()
    starts: list[int] = []
    i = text.index("[") + 1
    ws = re.compile(r"[\s,]*")
    while True:
        i = ws.match(text, i).end()
        if i >= len(text) or text[i] == "]":
            break
        starts.append(text.count("\n", 0, i) + 1)
        _, i = decoder.raw_decode(text, i)
    return starts


_OPTION_COL = re.compile(r"^option_([a-z])$")


def load_csv(path: str | os.PathLike) -> list[Question]:
    """Questions from a CSV file with a header row. Column names are case-insensitive.

    Accepted layouts for the options (first match wins):

    1. `options`: one cell holding a JSON list of strings, e.g. `["Paris", "Rome", "Oslo"]`;
    2. `option_a`, `option_b`, ...: one column per option, consecutive from `option_a`;
    3. `A`, `B`, `C`, `D`, ...: one column per option, consecutive from `A`.

    In layouts 2 and 3, empty cells at the end of a row are allowed (questions with fewer options);
    an empty cell followed by a filled one is an error. `question` and `answer` are required;
    `answer` is a 0-based index ("2") or a letter ("C"). Optional columns: `id` (default
    "<file stem>-<line>"), `subject`, `stratum`, `rationale` (empty cell → None). The file must
    be UTF-8 and hold at least one question row.
    """
    p = _check_file(path)
    with io.StringIO(_validate.read_text(p), newline="") as f:  # UTF-8 (BOM allowed); bad bytes name the line
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{p}, line 1: empty file (expected a header row).") from None
        cols = [h.strip().lower() for h in header]
        for name in ("question", "answer"):
            if name not in cols:
                raise ValueError(f"{p}, line 1: missing column {name!r} (header: {header}).")
        if "options" in cols:
            layout, option_cols = "json", [cols.index("options")]
        else:
            option_cols = _consecutive_columns(cols, [f"option_{c}" for c in string.ascii_lowercase])
            layout = "columns"
            if not option_cols:
                option_cols = _consecutive_columns(cols, list(string.ascii_lowercase))
            if len(option_cols) < 2:
                raise ValueError(f"{p}, line 1: no option columns; expected 'options' (a JSON list), "
                                 f"'option_a', 'option_b', ... or 'A', 'B', ... (header: {header}).")
        rows = []
        line = reader.line_num + 1
        for record in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(cols):
                raise ValueError(f"{p}, line {start}: {len(record)} cells but the header has {len(cols)} columns.")
            cell = dict(zip(cols, record))
            try:
                options = _csv_options(record, option_cols, layout)
            except ValueError as e:
                raise ValueError(f"{p}, line {start}: {e}") from None
            row: dict[str, Any] = {"question": cell["question"], "options": options, "answer": cell["answer"]}
            for name in ("id", *_OPTIONAL_STR):
                if name in cell and cell[name].strip():
                    row[name] = cell[name].strip()
            rows.append((start, row))
    return _collect(p, rows, digit_answers=True)


def _consecutive_columns(cols: list[str], names: list[str]) -> list[int]:
    out = []
    for name in names:
        if name not in cols:
            break
        out.append(cols.index(name))
    return out


def _csv_options(record: list[str], option_cols: list[int], layout: str) -> list[str]:
    if layout == "json":
        try:
            options = json.loads(record[option_cols[0]])
        except json.JSONDecodeError as e:
            raise ValueError(f"column 'options' is not a JSON list ({e.msg}).") from None
        if not isinstance(options, list):
            raise ValueError(f"column 'options' must be a JSON list of strings; got {type(options).__name__}.")
        return options
    cells = [record[i] for i in option_cols]
    while cells and not cells[-1].strip():
        cells.pop()
    return cells


def save_jsonl(questions: Iterable[Question], path: str | os.PathLike) -> Path:
    """Writes one `Question.to_dict()` per line (UTF-8, "\\n" line ends); returns the path."""
    questions = list(questions)
    check_unique_ids(questions)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    # Written beside the target and renamed: an interrupted write never leaves a truncated set.
    with tmp.open("w", encoding="utf-8", newline="\n") as f:
        for q in questions:
            f.write(json.dumps(q.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, p)
    return p


# ---------------------------------------------------------------------------------------------
# Shuffled options (GPQA lists the correct answer first).


def option_permutation(qid: str, n: int) -> tuple[int, ...]:
    """A permutation of range(n) determined by the question id alone.

    Source option i goes to the position given by sorting the SHA-256 digests of "<qid>/<i>":
    the same on every machine, Python and library version, and independent of load order (unlike a
    global RNG, which made GPQA option orders differ between builds of other harnesses).
    """
    keys = [hashlib.sha256(f"{qid}/{i}".encode()).digest() for i in range(n)]
    return tuple(sorted(range(n), key=keys.__getitem__))


def shuffle_options(qid: str, options: Sequence[str], answer: int) -> tuple[tuple[str, ...], int, tuple[int, ...]]:
    """(shuffled options, new answer index, permutation) with `shuffled[i] = options[perm[i]]`."""
    perm = option_permutation(qid, len(options))
    return tuple(options[j] for j in perm), perm.index(answer), perm


# ---------------------------------------------------------------------------------------------
# Benchmarks on the Hugging Face Hub (optional `datasets`).


class DatasetUnavailableError(RuntimeError):
    """A benchmark could not be read (no `datasets`, no network, gated dataset, ...)."""


def _strip(s: Any) -> Any:
    return s.strip() if isinstance(s, str) else s


def _from_mmlu(row: Mapping, i: int, split: str) -> Question:
    return Question(id=f"mmlu-{split}-{i:05d}", question=row["question"], options=tuple(row["choices"]),
                    answer=int(row["answer"]), subject=row.get("subject") or None)


def _from_mmlu_pro(row: Mapping, i: int, split: str) -> Question:
    return Question(id=f"mmlu-pro-{row['question_id']}", question=row["question"], options=tuple(row["options"]),
                    answer=int(row["answer_index"]), subject=row.get("category") or None)


def _from_gpqa(row: Mapping, i: int, split: str) -> Question:
    qid = f"gpqa-{row.get('Record ID') or f'{split}-{i:05d}'}"
    source = [_strip(row["Correct Answer"])] + [_strip(row[f"Incorrect Answer {k}"]) for k in (1, 2, 3)]
    options, answer, perm = shuffle_options(qid, source, 0)
    return Question(id=qid, question=_strip(row["Question"]), options=options, answer=answer,
                    subject=row.get("High-level domain") or None, rationale=_strip(row.get("Explanation")) or None,
                    permutation=perm)


def _from_labelled(prefix: str, subject: str | None):
    def convert(row: Mapping, i: int, split: str) -> Question:
        labels = list(row["choices"]["label"])
        key = row["answerKey"]
        if key not in labels:
            raise ValueError(f"answerKey {key!r} is not among the choice labels {labels}.")
        return Question(id=f"{prefix}-{row.get('id') or f'{split}-{i:05d}'}", question=row["question"],
                        options=tuple(row["choices"]["text"]), answer=labels.index(key), subject=subject)

    return convert


# name: (Hub path, config, default split, row converter)
BENCHMARKS: dict[str, tuple[str, str | None, str, Any]] = {
    "mmlu": ("cais/mmlu", "all", "test", _from_mmlu),
    "mmlu-pro": ("TIGER-Lab/MMLU-Pro", None, "test", _from_mmlu_pro),
    "gpqa": ("Idavidrein/gpqa", "gpqa_diamond", "train", _from_gpqa),
    # GPQA main (448 questions): the Chapter 5 set.
    "gpqa-main": ("Idavidrein/gpqa", "gpqa_main", "train", _from_gpqa),
    "arc-challenge": ("allenai/ai2_arc", "ARC-Challenge", "test", _from_labelled("arc", None)),
    # The CommonsenseQA test split has no answer keys; validation is the usual evaluation split.
    "commonsenseqa": ("tau/commonsense_qa", None, "validation", _from_labelled("csqa", "commonsense")),
}

_EXPORT_HINT = ("export the questions to JSONL, one object per line with fields id, question, options "
                "(list of strings), answer (0-based index or letter) and optionally subject, and pass the "
                "file instead: load('path.jsonl') or --data path.jsonl")


def _load_benchmark(name: str, split: str | None, limit: int | None) -> list[Question]:
    hub_path, config, default_split, convert = BENCHMARKS[name]
    split = split or default_split
    where = f"{hub_path}" + (f" ({config})" if config else "") + f", split {split!r}"
    try:
        import datasets
    except ImportError:
        raise DatasetUnavailableError(
            f"loading {name!r} ({where}) needs the optional `datasets` library (pip install datasets) and "
            f"access to the Hugging Face Hub. Without them, {_EXPORT_HINT}.") from None
    try:
        ds = datasets.load_dataset(hub_path, config, split=split)
    except Exception as e:  # network, authentication, gated access, unknown split: all end the same way
        gated = " GPQA is gated: accept its terms on the Hub and log in first." if name == "gpqa" else ""
        raise DatasetUnavailableError(
            f"could not load {name!r} from {where}: {type(e).__name__}: {e}.{gated} "
            f"Alternatively, {_EXPORT_HINT}.") from e
    questions = []
    for i, row in enumerate(ds):
        if limit is not None and i >= limit:
            break
        try:
            questions.append(convert(row, i, split))
        except (KeyError, TypeError, ValueError) as e:
            detail = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            raise ValueError(f"{name} ({where}), row {i + 1}: {detail}") from None
    check_unique_ids(questions)
    return questions


def load(source: str | os.PathLike, *, split: str | None = None, limit: int | None = None) -> list[Question]:
    """Questions from a local file, the shipped demo set, or a benchmark.

    Args:
      source: a path ending in .jsonl, .json or .csv; "demo"; or a name in `BENCHMARKS`
        (case-insensitive).
      split: benchmark split (default: test; GPQA train, its only split; CommonsenseQA
        validation). Local files and the demo set have no splits: must be None.
      limit: keep the first `limit` questions.

    Raises:
      FileNotFoundError: the local file does not exist.
      ValueError: a malformed file (the message names the file and line) or unknown source.
      DatasetUnavailableError: a benchmark without `datasets` or without the Hub.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"`limit` must be a non-negative int or None; got {limit!r}.")
    if isinstance(source, str) and source.lower() in BENCHMARKS:
        return _load_benchmark(source.lower(), split, limit)
    if split is not None:
        raise ValueError(f"`split` applies to the benchmarks {sorted(BENCHMARKS)} only; got split={split!r} "
                         f"for {source!r}.")
    if isinstance(source, str) and source.lower() == "demo":
        questions = load_jsonl(DEMO_PATH)
    else:
        p = Path(source)
        suffix = p.suffix.lower()
        readers = {".jsonl": load_jsonl, ".json": load_json, ".csv": load_csv}
        if suffix not in readers:
            raise ValueError(f"unknown question source {str(source)!r}: expected a .jsonl, .json or .csv file, "
                             f"'demo', or one of {sorted(BENCHMARKS)}.")
        questions = readers[suffix](p)
    return questions if limit is None else questions[:limit]
