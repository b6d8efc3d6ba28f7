"""Multiple-choice data layer: schema, loaders, the shipped demo set and its generator, benchmarks."""

from __future__ import annotations

import collections
import importlib.util
import json
import re
import sys
import types
from pathlib import Path

import pytest

from entropy_jax.data import mcqa
from entropy_jax.data.mcqa import Question

ROOT = Path(__file__).resolve().parents[2]


def _q(**kw) -> Question:
    base = dict(id="q1", question="What is 2 + 2?", options=("3", "4", "5", "6"), answer=1)
    return Question(**{**base, **kw})


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Schema


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(options=()), "at least 2 options; got 0"),
        (dict(options=("only",), answer=0), "at least 2 options; got 1"),
        (dict(options=("a", " ", "c")), "option 1 is an empty string"),
        (dict(options=("a", 3, "c")), "option 1 must be a string"),
        (dict(options="abcd"), "options must be a list"),
        (dict(answer=4), "answer index 4 is out of range for 4 options"),
        (dict(answer=-1), "answer index -1 is out of range"),
        (dict(answer=True), "answer must be a 0-based int"),
        (dict(answer="B"), "answer must be a 0-based int"),
        (dict(question="  "), "question text is empty"),
        (dict(question=None), "question text must be a string"),
        (dict(id=""), "question id must be a non-empty string"),
        (dict(subject=3), "subject must be a string or None"),
        (dict(permutation=(0, 1, 1, 3)), "permutation must list 0..3"),
    ],
)
def test_question_validation(kw, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        _q(**kw)


def test_more_options_than_labels_names_the_question():
    opts = tuple(f"o{i}" for i in range(27))
    with pytest.raises(ValueError, match=r"question 'big' has 27 options; at most 26"):
        Question(id="big", question="?", options=opts, answer=0)
    Question(id="ok", question="?", options=opts[:26], answer=25)  # exactly 26 is fine


def test_labels_letters_and_numbers():
    assert mcqa.option_labels(4) == ("A", "B", "C", "D")
    assert mcqa.option_labels(3, "numbers") == ("1", "2", "3")
    assert mcqa.option_labels(26)[-1] == "Z" and mcqa.option_labels(26, "numbers")[-1] == "26"
    q = _q()
    assert q.labels("numbers") == ("1", "2", "3", "4")
    assert q.answer_label() == "B" and q.answer_label("numbers") == "2" and q.answer_text == "4"
    assert mcqa.label_index("c") == 2 and mcqa.label_index(" 3 ", "numbers") == 2
    with pytest.raises(ValueError, match=r"question 'q7' has 27 options, but the letters style has only 26"):
        mcqa.option_labels(27, qid="q7")
    with pytest.raises(ValueError, match="numbers style has only 26"):
        mcqa.option_labels(30, "numbers")
    with pytest.raises(ValueError, match="label style must be one of"):
        mcqa.option_labels(4, "roman")
    with pytest.raises(ValueError, match="not a letters label"):
        mcqa.label_index("AA")


def test_question_is_frozen_hashable_and_lists_become_tuples():
    q = Question(id="x", question="?", options=["a", "b"], answer=0)
    assert q.options == ("a", "b") and hash(q) == hash(Question(id="x", question="?", options=("a", "b"), answer=0))
    with pytest.raises(AttributeError):
        q.answer = 1  # type: ignore[misc]


def test_dict_round_trip():
    q = _q(subject="arithmetic", stratum="reasoning", rationale="2 + 2 = 4.")
    d = q.to_dict()
    assert d == {"id": "q1", "question": "What is 2 + 2?", "options": ["3", "4", "5", "6"], "answer": 1,
                 "subject": "arithmetic", "stratum": "reasoning", "rationale": "2 + 2 = 4."}
    assert Question.from_dict(d) == q
    assert "rationale" not in _q().to_dict()  # None fields are left out
    assert Question.from_dict({"id": "z", "question": "?", "choices": ["a", "b", "c"], "answer": "C"}).answer == 2
    with pytest.raises(ValueError, match="missing field 'id'"):
        Question.from_dict({"question": "?", "options": ["a", "b"], "answer": 0})


def test_duplicate_ids_in_a_set():
    with pytest.raises(ValueError, match=r"duplicate question id 'q1' \(questions 1 and 3\)"):
        mcqa.check_unique_ids([_q(), _q(id="q2"), _q()])


# ---------------------------------------------------------------------------------------------
# JSONL / JSON


def test_jsonl_round_trip(tmp_path):
    qs = [
        _q(subject="arithmetic", stratum="reasoning", rationale="2 + 2 = 4."),
        Question(id="café-1", question="Où est Bogotá?", options=("Colombie", "Pérou"), answer=0,
                 stratum="knowledge"),
        Question(id="g", question="?", options=("w", "x", "y", "z"), answer=2, permutation=(3, 0, 2, 1)),
    ]
    path = mcqa.save_jsonl(qs, tmp_path / "sub" / "qs.jsonl")
    assert mcqa.load_jsonl(path) == qs
    assert mcqa.load(path) == qs and mcqa.load(str(path), limit=2) == qs[:2]
    assert path.read_bytes().count(b"\n") == 3 and "Bogotá".encode() in path.read_bytes()
    with pytest.raises(ValueError, match="duplicate question id"):
        mcqa.save_jsonl([qs[0], qs[0]], tmp_path / "dup.jsonl")


def test_jsonl_defaults_blank_lines_and_letter_answers(tmp_path):
    path = _write(tmp_path / "mine.jsonl",
                  '{"question": "a?", "options": ["x", "y"], "answer": "B"}\n\n'
                  '{"question": "b?", "choices": ["x", "y", "z"], "answer": 0, "extra": 1}\n')
    a, b = mcqa.load_jsonl(path)
    assert (a.id, a.answer) == ("mine-1", 1)
    assert (b.id, b.options, b.subject) == ("mine-3", ("x", "y", "z"), None)


@pytest.mark.parametrize(
    "bad_line, match",
    [
        ('{"question": "q", "options": ["a", "b"], "answer": 0', "invalid JSON"),
        ('["q", ["a", "b"], 0]', "expected a JSON object"),
        ('{"options": ["a", "b"], "answer": 0}', "missing field 'question'"),
        ('{"question": "q", "answer": 0}', "missing field 'options'"),
        ('{"question": "q", "options": ["a", "b"]}', "missing field 'answer'"),
        ('{"question": "q", "options": "a, b", "answer": 0}', "field 'options' must be a list"),
        ('{"question": "q", "options": ["a", "b"], "answer": "2"}', "0-based index or a letter"),
        ('{"question": "q", "options": ["a", "b"], "answer": 2}', "answer index 2 is out of range"),
        ('{"question": "q", "options": [], "answer": 0}', "at least 2 options; got 0"),
        ('{"question": "", "options": ["a", "b"], "answer": 0}', "question text is empty"),
        ('{"id": 7, "question": "q", "options": ["a", "b"], "answer": 0}', "field 'id' must be a string"),
        ('{"id": "ok-1", "question": "q", "options": ["a", "b"], "answer": 0}', "duplicate question id 'ok-1' "
                                                                               "(first on line 1)"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, bad_line, match):
    good = '{"id": "ok-1", "question": "q", "options": ["a", "b"], "answer": 0}'
    path = _write(tmp_path / "bad.jsonl", f"{good}\n\n{bad_line}\n{good.replace('ok-1', 'ok-2')}\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3: ") + ".*" + re.escape(match)):
        mcqa.load(path)


def test_json_array(tmp_path):
    rows = [{"id": "a", "question": "q", "options": ["x", "y"], "answer": 1},
            {"id": "b", "question": "r", "options": ["x", "y"], "answer": "A"}]
    path = _write(tmp_path / "qs.json", json.dumps(rows, indent=2))
    assert [q.id for q in mcqa.load(path)] == ["a", "b"]
    rows[1]["answer"] = 5
    path = _write(tmp_path / "bad.json", json.dumps(rows, indent=2))
    second = [i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip() == "{"][1]
    assert second == 11
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 11: ") + ".*out of range"):
        mcqa.load(path)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'broken.json'}, line 2: invalid JSON")):
        mcqa.load(_write(tmp_path / "broken.json", '[\n{"a": }\n]'))
    with pytest.raises(ValueError, match="expected a JSON array"):
        mcqa.load(_write(tmp_path / "obj.json", '{"questions": []}'))


def test_missing_file_and_unknown_source(tmp_path):
    for name in ("nope.jsonl", "nope.json", "nope.csv"):
        with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / name))):
            mcqa.load(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        mcqa.load_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match=r"expected a \.jsonl, \.json or \.csv file, 'demo', or one of"):
        mcqa.load(tmp_path / "questions.txt")
    with pytest.raises(ValueError, match="`split` applies to the benchmarks"):
        mcqa.load("demo", split="test")
    with pytest.raises(ValueError, match="`limit` must be"):
        mcqa.load("demo", limit=-1)


# ---------------------------------------------------------------------------------------------
# CSV


def test_csv_json_options_layout(tmp_path):
    path = _write(tmp_path / "a.csv",
                  'id,question,options,answer,subject\n'
                  'x1,"Capital of France?","[""Paris"", ""Rome"", ""Oslo""]",0,geography\n'
                  'x2,"Two, plus two?","[""3"", ""4""]",B,\n')
    a, b = mcqa.load(path)
    assert a == Question(id="x1", question="Capital of France?", options=("Paris", "Rome", "Oslo"), answer=0,
                         subject="geography")
    assert (b.question, b.answer, b.subject) == ("Two, plus two?", 1, None)


def test_csv_option_columns_layout(tmp_path):
    path = _write(tmp_path / "b.csv",
                  "Question,Option_A,Option_B,Option_C,Option_D,Answer,Stratum\n"
                  "q one,a,b,c,d,3,knowledge\n"
                  "q two,a,b,c,,c,\n")
    a, b = mcqa.load(path)
    assert (a.id, a.options, a.answer, a.stratum) == ("b-2", ("a", "b", "c", "d"), 3, "knowledge")
    assert (b.id, b.options, b.answer, b.stratum) == ("b-3", ("a", "b", "c"), 2, None)


def test_csv_letter_columns_layout_with_bom_and_multiline_cells(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes("\ufeffquestion,A,B,C,D,answer,rationale\n"
                     '"first line\nsecond line",w,x,y,z,D,"step 1"\n'
                     "later,w,x,y,z,a,\n".encode())
    a, b = mcqa.load(path)
    assert (a.question, a.answer, a.rationale) == ("first line\nsecond line", 3, "step 1")
    assert (b.id, b.answer) == ("c-4", 0)  # the quoted cell spans lines 2-3


@pytest.mark.parametrize(
    "header, row, match",
    [
        ("question,A,B,C,D,answer", "q,a,,c,d,0", "option 1 is an empty string"),
        ("question,A,B,C,D,answer", "q,a,b,c,d,4", "answer index 4 is out of range"),
        ("question,A,B,C,D,answer", "q,a,b,c,d,E", "answer index 4 is out of range"),
        ("question,A,B,C,D,answer", "q,a,b,c,d,-1", "0-based index or a letter"),
        ("question,A,B,C,D,answer", "q,a,b,c,d", "5 cells but the header has 6 columns"),
        ("question,options,answer", 'q,"[""a"", ""b""",0', "column 'options' is not a JSON list"),
        ("question,options,answer", "q,7,0", "column 'options' must be a JSON list"),
        ("question,options,answer", 'q,"[""a"", 2]",0', "option 1 must be a string"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, header, row, match):
    good = "q,a,b,c,d,0" if "A" in header else 'q,"[""a"", ""b""]",0'
    path = _write(tmp_path / "bad.csv", f"{header}\n{good}\n{row}\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3: ") + ".*" + re.escape(match)):
        mcqa.load(path)


def test_csv_header_errors(tmp_path):
    with pytest.raises(ValueError, match=r"line 1: missing column 'answer'"):
        mcqa.load(_write(tmp_path / "h1.csv", "question,A,B\nq,a,b\n"))
    with pytest.raises(ValueError, match=r"line 1: no option columns"):
        mcqa.load(_write(tmp_path / "h2.csv", "question,first,second,answer\nq,a,b,0\n"))
    with pytest.raises(ValueError, match=r"line 1: empty file"):
        mcqa.load(_write(tmp_path / "h3.csv", ""))


# ---------------------------------------------------------------------------------------------
# The shipped demo set and its generator


def test_demo_set():
    qs = mcqa.load("demo")
    assert len({q.id for q in qs}) == len(qs)
    assert len({q.question for q in qs}) == len(qs)
    by_stratum = collections.defaultdict(list)
    for q in qs:
        by_stratum[q.stratum].append(q)
    assert set(by_stratum) == set(mcqa.STRATA)
    for stratum, group in by_stratum.items():
        assert len(group) >= 150, stratum
        positions = collections.Counter(q.answer for q in group)
        assert sorted(positions) == [0, 1, 2, 3] and max(positions.values()) - min(positions.values()) <= 1, positions
        prefix = "know" if stratum == "knowledge" else "reas"
        for q in group:
            assert re.fullmatch(rf"{prefix}-\d{{4}}", q.id), q.id
            assert len(q.options) == 4 and len(set(q.options)) == 4, q
            assert q.subject and len(q.question.split()) <= 45, q
            assert Question.from_dict(q.to_dict()) == q
            assert q.rationale, q  # every question has one: the Chapter 4 demo teacher
    reasoning_subjects = {q.subject for q in by_stratum["reasoning"]}
    assert {"arithmetic", "logic", "unit conversion", "modular arithmetic"} <= reasoning_subjects
    assert {q.stratum for q in mcqa.load("demo", limit=10)} == set(mcqa.STRATA)  # interleaved
    # Every rationale's last sentence states the answer it explains ("$28" → "28", "10 o'clock" → "10").
    for q in by_stratum["reasoning"]:
        last = q.rationale.rstrip(".").split(". ")[-1]
        assert re.search(rf"\b{re.escape(q.answer_text.lstrip('$').split()[0])}\b", last), q
    # A knowledge rationale is one sentence that names the correct option and no distractor.
    for q in by_stratum["knowledge"]:
        assert q.answer_text in q.rationale, q
        conclusion = q.rationale.split(", so")[-1]
        assert not any(re.search(rf"\b{re.escape(o)}\b", conclusion) for i, o in enumerate(q.options)
                       if i != q.answer and o not in q.answer_text), q


def _generator():
    spec = importlib.util.spec_from_file_location("make_mcqa_demo", ROOT / "data" / "make_mcqa_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_is_deterministic_and_matches_shipped_file(tmp_path):
    gen = _generator()
    a = gen.main(["--out", str(tmp_path / "a.jsonl")])
    b = gen.main(["--out", str(tmp_path / "b.jsonl")])
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() == mcqa.DEMO_PATH.read_bytes(), "data/mcqa_demo.jsonl is stale: run data/make_mcqa_demo.py"


# ---------------------------------------------------------------------------------------------
# Shuffled options (GPQA) and benchmarks


def test_option_permutation_is_seeded_by_id():
    p = mcqa.option_permutation("gpqa-recXYZ", 4)
    assert p == mcqa.option_permutation("gpqa-recXYZ", 4) == (0, 1, 3, 2)  # pinned: same on every build
    assert mcqa.option_permutation("a", 10) == (2, 3, 6, 1, 5, 8, 7, 9, 4, 0)
    opts, ans, perm = mcqa.shuffle_options("gpqa-recABC", ["right", "w1", "w2", "w3"], 0)
    assert opts[ans] == "right" and [["right", "w1", "w2", "w3"][j] for j in perm] == list(opts)
    # Over many ids the source's first option lands evenly on every position.
    where = collections.Counter(mcqa.option_permutation(f"gpqa-{i}", 4).index(0) for i in range(800))
    assert sorted(where) == [0, 1, 2, 3] and min(where.values()) > 150, where


_FAKE_ROWS = {
    ("cais/mmlu", "all"): [{"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1, "subject": "math"}],
    ("TIGER-Lab/MMLU-Pro", None): [{"question_id": 70, "question": "Q?", "options": [f"o{i}" for i in range(10)],
                                    "answer": "J", "answer_index": 9, "category": "law"}],
    ("Idavidrein/gpqa", "gpqa_diamond"): [
        {"Record ID": f"rec{i}", "Question": f" Q{i}? \n", "Correct Answer": " right\n", "Incorrect Answer 1": "w1",
         "Incorrect Answer 2": "w2", "Incorrect Answer 3": "w3", "High-level domain": "Physics",
         "Explanation": "because"} for i in range(20)],
    ("Idavidrein/gpqa", "gpqa_main"): [
        {"Record ID": f"rec{i}", "Question": f"M{i}?", "Correct Answer": "right", "Incorrect Answer 1": "w1",
         "Incorrect Answer 2": "w2", "Incorrect Answer 3": "w3"} for i in range(3)],
    ("allenai/ai2_arc", "ARC-Challenge"): [
        {"id": "Mercury_1", "question": "Which?", "choices": {"text": ["a", "b", "c"], "label": ["1", "2", "3"]},
         "answerKey": "3"},
        {"id": "Mercury_2", "question": "Which?", "choices": {"text": ["a", "b", "c", "d", "e"],
                                                              "label": ["A", "B", "C", "D", "E"]}, "answerKey": "B"}],
    ("tau/commonsense_qa", None): [
        {"id": "abc", "question": "Where?", "question_concept": "x",
         "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["p", "q", "r", "s", "t"]}, "answerKey": "E"}],
}


@pytest.fixture
def fake_datasets(monkeypatch):
    calls = []

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return list(_FAKE_ROWS[(path, name)])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_benchmark_field_mappings(fake_datasets):
    (q,) = mcqa.load("mmlu")
    assert (q.id, q.options, q.answer, q.subject) == ("mmlu-test-00000", ("3", "4", "5", "6"), 1, "math")
    (q,) = mcqa.load("MMLU-Pro", split="validation")
    assert (q.id, len(q.options), q.answer, q.answer_label("numbers"), q.subject) == ("mmlu-pro-70", 10, 9, "10", "law")
    a, b = mcqa.load("arc-challenge")
    assert (a.id, a.answer, b.answer, len(b.options)) == ("arc-Mercury_1", 2, 1, 5)
    (q,) = mcqa.load("commonsenseqa")
    assert (q.id, q.answer, q.answer_text) == ("csqa-abc", 4, "t")
    assert [c[2] for c in fake_datasets] == ["test", "validation", "test", "validation"]


def test_gpqa_options_shuffled_reproducibly(fake_datasets):
    first, again = mcqa.load("gpqa"), mcqa.load("gpqa")
    assert first == again
    assert [q.id for q in mcqa.load("gpqa", limit=3)] == ["gpqa-rec0", "gpqa-rec1", "gpqa-rec2"]
    for q in first:
        assert q.answer_text == "right" and q.question == q.question.strip() and q.subject == "Physics"
        assert q.permutation == mcqa.option_permutation(q.id, 4) and q.options[q.permutation.index(0)] == "right"
    assert len({q.answer for q in first}) > 1  # not always in the same slot
    assert fake_datasets[0] == ("Idavidrein/gpqa", "gpqa_diamond", "train")
    main = mcqa.load("gpqa-main")  # the Chapter 5 split; same ids → same permutations as diamond's
    assert fake_datasets[-1] == ("Idavidrein/gpqa", "gpqa_main", "train")
    assert [q.permutation for q in main] == [mcqa.option_permutation(f"gpqa-rec{i}", 4) for i in range(3)]
    assert all(q.answer_text == "right" for q in main)


def test_benchmark_row_errors_name_the_row(monkeypatch):
    rows = [{"question": "q", "choices": ["a", "b"], "answer": 0}, {"question": "q", "choices": ["a", "b"]}]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda *a, **k: rows))
    with pytest.raises(ValueError, match=r"mmlu \(cais/mmlu \(all\), split 'test'\), row 2: missing field 'answer'"):
        mcqa.load("mmlu")


@pytest.mark.parametrize("name", sorted(mcqa.BENCHMARKS))
def test_benchmarks_without_datasets_say_how_to_pass_a_file(monkeypatch, name):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(mcqa.DatasetUnavailableError) as info:
        mcqa.load(name)
    msg = str(info.value)
    assert "`datasets`" in msg and mcqa.BENCHMARKS[name][0] in msg
    assert "export the questions to JSONL" in msg and "--data path.jsonl" in msg


def test_benchmark_download_failure_says_how_to_pass_a_file(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(mcqa.DatasetUnavailableError, match="no route to host.*GPQA is gated.*--data path.jsonl") as info:
        mcqa.load("gpqa")
    assert isinstance(info.value.__cause__, ConnectionError)


# ---------------------------------------------------------------------------------------------
# Unreadable and empty files: the error names the file (and the line), before any scoring.

_GOOD_ROW = '{"id": "ok-1", "question": "q", "options": ["a", "b"], "answer": 0}'


@pytest.mark.parametrize(
    "name, content, line",
    [
        ("latin1.jsonl", (_GOOD_ROW + "\n" + '{"id": "x", "question": "Caf\xe9?", "options": ["a", "b"], '
                          '"answer": 0}\n').encode("latin-1"), 2),
        ("latin1.json", ('[\n' + _GOOD_ROW + ',\n{"id": "x", "question": "\xfcber", "options": ["a", "b"], '
                         '"answer": 0}\n]').encode("latin-1"), 3),
        ("latin1.csv", "question,A,B,answer\nq,a,b,0\nr\xe9,a,b,1\n".encode("latin-1"), 3),
    ],
)
def test_non_utf8_files_name_file_and_line(tmp_path, name, content, line):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f"{path}, line {line}: not UTF-8 text")):
        mcqa.load(path)


@pytest.mark.parametrize(
    "name, text",
    [("empty.jsonl", ""), ("blank.jsonl", "\n  \n\n"), ("empty.json", "[]"), ("header.csv", "question,A,B,answer\n")],
)
def test_files_without_questions_are_an_error_not_an_empty_run(tmp_path, name, text):
    path = _write(tmp_path / name, text)
    with pytest.raises(ValueError, match=re.escape(f"{path}: no questions")):
        mcqa.load(path)


def test_jsonl_with_crlf_and_bom_still_loads_with_line_numbers(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(("\ufeff" + _GOOD_ROW + "\r\n\r\n" + '{"question": "r", "options": ["a"], "answer": 0}\r\n')
                     .encode("utf-8"))
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3: ") + ".*at least 2 options"):
        mcqa.load(path)
    path.write_bytes(("\ufeff" + _GOOD_ROW + "\r\n").encode("utf-8"))
    assert [q.id for q in mcqa.load(path)] == ["ok-1"]
