"""Model-as-judge strata (Chapter 3): a judge model labels each question knowledge- or reasoning-dominated, and
the scored model's uncertainty signals are evaluated per judge stratum.

    from entropy_jax.eval import strata
    cfg = strata.JudgeConfig(mode="probe", scores=Path("results/mcqa/scores.jsonl"), limit=48)
    print(strata.markdown(strata.run(cfg, "results/strata")))

The judge (any `entropy_jax.llm.load` source) is asked, without answering the question, for a short
explanation and then four ratings in a fixed bracketed format: needs specific domain knowledge (yes/no),
needs multi-step reasoning (yes/no), number of reasoning steps (low/medium/high) and, when `scores` gives
another model's answers, its confidence (0–100) that that answer is right. Greedy decoding; the raw judge
text is kept. `mode="probe"` instead asks one yes/no question per rating and reads p(yes) from the next-token
distribution (one forward pass each). Writes OUT/strata.jsonl (id, judge output, parsed ratings,
judge_stratum; a batch store, resumed like the scoring run: each row's "content" keys the question and the
answer the judge was shown, OUT/inputs.json the data and the judge's files, and a resume with other ones is
refused naming them) and OUT/strata_metrics.json: parse rate,
agreement with the data's own strata, and — with `scores` — the scored model's accuracy and every uncertainty
signal's error detection per judge stratum, plus the judge's confidence evaluated as an error predictor
exactly like entropy (ROC-AUC with a bootstrap interval, PRR, AURC).

Prompt format (`JudgeConfig.prompt`, `instruction`; recorded in the settings): chat (the judge's chat template,
the default), plain (the same text with no template: probes end in "\\nAnswer:" and the Yes/No token is read
after it, a generated reply starts on a new line) or mmlu (plain, the rated question in lm-eval's MMLU layout);
an instruction, when given, comes before every judge prompt.

`scores` must hold rows of the same questions as `data` (ids shared, the same content keys); a scores file
sharing no ids with the data is an error naming both. Every field is checked before any work
(`JudgeConfig.check`); a question whose judge prompt does not fit the judge's context stops the run before
judging, named by id, unless `skip_long` (a "skipped" row each, counted in the metrics).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from entropy_jax import _validate as check
from entropy_jax import configs
from entropy_jax.data import mcqa
from entropy_jax.eval import mcqa_run
from entropy_jax.eval import metrics as M
from entropy_jax.llm import api, prompts, scoring
from entropy_jax.stores import (
    JsonlStore,
    RunLock,
    check_batches,
    check_inputs,
    check_settings,
    digest,
    write_json,
)

MODES = ("generate", "probe")

FORMAT = "[knowledge: yes/no] [reasoning: yes/no] [steps: low/medium/high]"
PROMPT = """You are rating a multiple-choice question. Do NOT answer it.

{question}

First explain in one or two sentences what solving it requires. Then end with your ratings in exactly \
this format:
{format}
where "knowledge" means it needs specific factual or domain knowledge, "reasoning" means it needs \
several reasoning or calculation steps, and "steps" is how many such steps it needs."""
CONFIDENCE = """
Another model answered: {answer}. Also rate how confident you are that this answer is correct, \
adding [confidence: 0-100] at the end."""
_PATTERNS = {
    "knowledge": re.compile(r"\[\s*knowledge\s*:\s*(yes|no)\s*\]", re.I),
    "reasoning": re.compile(r"\[\s*reasoning\s*:\s*(yes|no)\s*\]", re.I),
    "steps": re.compile(r"\[\s*steps\s*:\s*(low|medium|high)\s*\]", re.I),
    "confidence": re.compile(r"\[\s*confidence\s*:\s*(\d{1,3}(?:\.\d+)?)\s*%?\s*\]", re.I),
}

JUDGE_FORMAT = prompts.PromptFormat("chat", None)  # the judge's default: its chat template, no extra instruction


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
    """What a judge run computes (every field is recorded in OUT/settings.json and compared on resume)."""

    judge: str = "smollm2-135m-instruct"
    """The judge model: alias, Hugging Face directory, .gguf file or hub id."""
    mode: str = "generate"
    """generate: explanation + bracketed ratings (the paper's judge); probe: one yes/no question per rating,
    read from the next-token distribution (p(yes) renormalised over yes/no; works for small models that
    do not follow the format)."""
    data: str = "demo"
    scores: Path | None = None
    """scores.jsonl of a Chapter 3 scoring run (`mcqa_run`): adds the judge's confidence and per-judge-stratum
    metrics."""
    limit: int | None = None
    batch_size: int = 8
    max_new_tokens: int = 96
    dtype: str = "float32"
    n_boot: int = 1000
    seed: int = 0
    prompt: str = "chat"
    """Prompt format of the judge (`entropy_jax.llm.prompts`): chat (its chat template), plain (the same text,
    no template) or mmlu (no template, the rated question in lm-eval's MMLU layout "<question>\\nA. …")."""
    instruction: str = "none"
    """An instruction put before every judge prompt, or none (the judge's rating instructions are its own and
    stay). The judge takes no few-shot examples: those are answered questions, and the judge rates, it does not
    answer."""
    skip_long: bool = False
    """Skip questions whose judge prompt does not fit the judge's context (a "skipped" row each, counted);
    without it such a question stops the run before any judging, named by id."""

    def check(self) -> JudgeConfig:
        """Every field, before any work: a `ConfigError` naming the flag."""
        check.flag_model("judge", self.judge)
        check.flag_choice("mode", self.mode, MODES)
        check.flag_text("data", self.data)
        if self.scores is not None and not Path(self.scores).is_file():
            raise check.flag_error("scores", "no such file (run launch.mcqa_entropy first)", str(self.scores))
        check.flag_optional_int("limit", self.limit, 1)
        check.flag_int("batch_size", self.batch_size, 1)
        check.flag_int("max_new_tokens", self.max_new_tokens, 1)
        check.flag_choice("dtype", self.dtype, check.DTYPES)
        check.flag_int("n_boot", self.n_boot, 1)
        check.flag_seed("seed", self.seed)
        judge_format(self)  # a bad --prompt or --instruction
        return self


def _listing(q: mcqa.Question) -> str:
    return "\n".join(f"{lab}. {opt}" for lab, opt in zip(prompts.option_labels(len(q.options)), q.options))


def _question(q: mcqa.Question, fmt: prompts.PromptFormat) -> str:
    """The rated question as the judge sees it: "Question: …" and "A. …" lines, or lm-eval's MMLU layout."""
    if fmt.kind == "mmlu":
        return prompts.question_block(q.question, q.options, prompts.option_labels(len(q.options)), "mmlu")
    return f"Question: {q.question}\n{_listing(q)}"


def _instructed(text: str, q: mcqa.Question, fmt: prompts.PromptFormat) -> str:
    if fmt.instruction is None:
        return text
    return prompts.fill_instruction(fmt.instruction, prompts.option_labels(len(q.options))) + "\n\n" + text


def judge_prompt(q: mcqa.Question, answer: str | None = None, fmt: prompts.PromptFormat = JUDGE_FORMAT) -> str:
    """The user turn sent to the judge for one question (with another model's answer if given), in format
    `fmt` (`judge_input` renders it)."""
    rating = FORMAT + (" [confidence: 0-100]" if answer is not None else "")
    text = PROMPT.format(question=_question(q, fmt), format=rating)
    return _instructed(text + (CONFIDENCE.format(answer=answer) if answer is not None else ""), q, fmt)


def judge_input(tokenizer, user: str, fmt: prompts.PromptFormat = JUDGE_FORMAT, *, probe: bool = False) -> str:
    """The exact text the judge reads: the chat template with the generation prompt (chat), else the text
    itself, followed by "\\nAnswer:" for a probe (the Yes/No token is read after it) or a newline before a
    generated reply."""
    if fmt.chat:
        return prompts.chat(tokenizer, user)
    return user + (prompts.TEXT_CUE if probe else "\n")


def parse(text: str) -> dict:
    """Ratings found in a judge reply (the last occurrence of each); None where absent."""
    out = {}
    for key, pattern in _PATTERNS.items():
        found = pattern.findall(text)
        out[key] = found[-1].lower() if found else None
    if out["confidence"] is not None:
        c = float(out["confidence"])
        out["confidence"] = c if 0 <= c <= 100 else None
    return out


def stratum(r: dict) -> str:
    """knowledge / reasoning from the yes/no ratings; both yes → by the step count; else unclear/unparsed."""
    k, z = r.get("knowledge"), r.get("reasoning")
    if k is None or z is None:
        return "unparsed"
    if k == "yes" and z == "no":
        return "knowledge"
    if z == "yes" and k == "no":
        return "reasoning"
    if k == "yes" and z == "yes" and r.get("steps") is not None:
        return "knowledge" if r["steps"] == "low" else "reasoning"
    return "unclear"


PROBES = {
    "knowledge": "Does answering this question mainly require recalling a specific fact, rather than working "
                 "something out? Answer Yes or No.",
    "reasoning": "Does answering this question require several reasoning or calculation steps? Answer Yes or No.",
}
PROBE_CONFIDENCE = "Another model answered: {answer}. Is this answer correct? Answer Yes or No."
def judge_format(config: JudgeConfig) -> prompts.PromptFormat:
    """The judge's prompt format from `config.prompt` and `config.instruction` (no few-shot examples)."""
    return prompts.PromptFormat.load(config.prompt, config.instruction)


def probe_prompts(q: mcqa.Question, answer: str | None = None,
                  fmt: prompts.PromptFormat = JUDGE_FORMAT) -> dict[str, str]:
    """The yes/no questions of probe mode for one question (user turns), in format `fmt`."""
    body = _question(q, fmt) + "\n\n"
    out = {k: _instructed(body + v, q, fmt) for k, v in PROBES.items()}
    if answer is not None:
        out["confidence"] = _instructed(body + PROBE_CONFIDENCE.format(answer=answer), q, fmt)
    return out


def _probe_batch(lm, chunk, answers, use_answers: bool, fmt: prompts.PromptFormat = JUDGE_FORMAT) -> list[dict]:
    """p(yes) of every probe for a batch of questions, one forward pass per prompt."""
    texts, index = [], []
    for i, q in enumerate(chunk):
        for key, text in probe_prompts(q, answers.get(q.id) if use_answers else None, fmt).items():
            texts.append(judge_input(lm.tokenizer, text, fmt, probe=True))
            index.append((i, key))
    labels = [scoring.label_token_ids(lm.tokenizer, p, ("Yes", "No"), first_token=True) for p in texts]
    scored = scoring.score_batch(lm, texts, labels)
    rows: list[dict] = [{} for _ in chunk]
    for (i, key), s in zip(index, scored):
        rows[i][f"p_yes_{key}"] = s.option_probs[0]
        rows[i][f"yes_no_mass_{key}"] = s.label_mass
    for r in rows:
        r["knowledge"] = "yes" if r["p_yes_knowledge"] >= 0.5 else "no"
        r["reasoning"] = "yes" if r["p_yes_reasoning"] >= 0.5 else "no"
        r["steps"] = None
        r["confidence"] = 100 * r["p_yes_confidence"] if "p_yes_confidence" in r else None
        # both or neither: the more probable of the two
        if (r["knowledge"] == "yes") == (r["reasoning"] == "yes"):
            r["knowledge"], r["reasoning"] = (("no", "yes") if r["p_yes_reasoning"] > r["p_yes_knowledge"]
                                              else ("yes", "no"))
    return rows


def strata_store(out: str | Path, *, writable: bool = False) -> JsonlStore:
    """OUT/strata.jsonl as a batch store (read-only unless `writable`)."""
    return JsonlStore(Path(out) / "strata.jsonl", required=("id", "batch", "batch_rows"), writable=writable)


def row_content(q: mcqa.Question, answer: str | None) -> str:
    """The content key of a judge row: the question's content and the answer the judge was shown (or None)."""
    return digest([mcqa.content_hash(q), answer])


def shown_answers(config: JudgeConfig, questions: list[mcqa.Question], answers: dict[str, str]) -> dict:
    """{id: the other model's answer the judge sees, or None}."""
    return {q.id: answers.get(q.id) if config.scores is not None else None for q in questions}


def judge_lengths(lm, questions: list[mcqa.Question], shown: dict, config: JudgeConfig) -> dict[str, int]:
    """{id: positions the judge needs}: its longest probe prompt (probe mode), or its prompt plus
    `max_new_tokens` (generate mode), as the judge reads them in its format (`judge_input`)."""
    fmt = judge_format(config)

    def n(text):
        return len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])

    if config.mode == "probe":
        return {q.id: max(n(judge_input(lm.tokenizer, t, fmt, probe=True))
                          for t in probe_prompts(q, shown[q.id], fmt).values())
                for q in questions}
    return {q.id: n(judge_input(lm.tokenizer, judge_prompt(q, shown[q.id], fmt), fmt)) + config.max_new_tokens
            for q in questions}


def annotate(config: JudgeConfig, questions: list[mcqa.Question], answers: dict[str, str], store: JsonlStore, *,
             lm=None, mesh=None, progress: bool = False) -> dict:
    """Judge every batch of `questions` not yet in `store` (writable); `answers` maps ids to another model's
    answers ("B (Paris)"), used when `config.scores` is set. Rows already in the store must be those of these
    questions and answers (`stores.check_batches`); every judge prompt must fit the judge's context unless
    `config.skip_long` (a `ConfigError` naming the ids, before any judging)."""
    from tqdm.auto import tqdm

    fmt = judge_format(config)
    shown = shown_answers(config, questions, answers)
    done = store.complete_batches()
    check_batches(store.path, done, [(q.id, row_content(q, shown[q.id])) for q in questions], config.batch_size,
                  content="its question or the answer shown to the judge")
    have = {r["batch"] for r in done}
    n_batches = -(-len(questions) // config.batch_size)
    todo = [b for b in range(n_batches) if b not in have]
    if not todo:
        return {}
    if lm is None:
        import entropy_jax.llm as llm

        lm = llm.load(config.judge, dtype=config.dtype, mesh=mesh)
    if lm.tokenizer is None:
        raise check.ConfigError(f"--judge: {config.judge} has no tokenizer; the judge reads text prompts")
    context = lm.config.max_position_embeddings
    long = {i: k for i, k in judge_lengths(lm, questions, shown, config).items() if k > context}
    if long and not config.skip_long:
        raise check.too_long(long, context, what=f"--judge {config.judge}")
    with tqdm(total=len(todo) * config.batch_size, disable=not progress, desc="judging", unit="q") as bar:
        for b in todo:
            chunk = questions[b * config.batch_size: (b + 1) * config.batch_size]
            kept = [q for q in chunk if q.id not in long]
            made: dict[str, dict] = {}
            if kept and config.mode == "probe":
                for q, ratings in zip(kept, _probe_batch(lm, kept, answers, config.scores is not None, fmt)):
                    made[q.id] = {"judge_output": None, **ratings, "judge_stratum": stratum(ratings),
                                  "data_stratum": q.stratum}
            elif kept:
                texts = [judge_prompt(q, shown[q.id], fmt) for q in kept]
                if fmt.chat:
                    g = lm.generate(texts, chat=True, max_new_tokens=config.max_new_tokens)
                else:  # the rendered text as is, no special tokens added (as scoring reads prompts)
                    ids = [lm.tokenizer(judge_input(lm.tokenizer, t, fmt), add_special_tokens=False)["input_ids"]
                           for t in texts]
                    g = lm.generate(ids, max_new_tokens=config.max_new_tokens)
                for i, q in enumerate(kept):
                    ratings = parse(g.texts[i])
                    made[q.id] = {"judge_output": g.texts[i], **ratings, "judge_stratum": stratum(ratings),
                                  "data_stratum": q.stratum, "judge_mean_entropy": float(g.mean_entropy()[i])}
            rows = []
            for q in chunk:
                head = {"id": q.id, "batch": b, "batch_rows": len(chunk), "content": row_content(q, shown[q.id])}
                if q.id in long:
                    rows.append(head | {"skipped": f"the judge needs {long[q.id]} positions, more than its "
                                                   f"context of {context}", "data_stratum": q.stratum})
                else:
                    rows.append(head | made[q.id])
            store.append(rows)
            bar.update(len(chunk))
    return {"judge_load_s": lm.load_seconds}


def compute_metrics(rows: list[dict], scores: list[dict] | None, *, n_boot: int, seed: int) -> dict:
    rows = mcqa_run.scored(rows)
    scores = None if scores is None else mcqa_run.scored(scores)
    n = len(rows)
    labels = [r["judge_stratum"] for r in rows]
    result = {
        "n": n,
        "parse_rate": float(np.mean([lab != "unparsed" for lab in labels])) if n else float("nan"),
        "judge_strata": {s: labels.count(s) for s in sorted(set(labels))},
    }
    with_data = [r for r in rows if r.get("data_stratum")]
    if with_data:
        pairs: dict[str, dict[str, int]] = {}
        for r in with_data:
            pairs.setdefault(r["data_stratum"], {}).setdefault(r["judge_stratum"], 0)
            pairs[r["data_stratum"]][r["judge_stratum"]] += 1
        agree = [r["judge_stratum"] == r["data_stratum"] for r in with_data]
        result["agreement_with_data_strata"] = {"fraction": float(np.mean(agree)), "confusion": pairs}
    if scores:
        by_id = {s["id"]: s for s in scores}
        joined = [(r, by_id[r["id"]]) for r in rows if r["id"] in by_id]
        per = {}
        for lab in sorted({r["judge_stratum"] for r, _ in joined}):
            sub = [s for r, s in joined if r["judge_stratum"] == lab]
            correct = np.array([s["correct"] for s in sub], bool)
            signals = {name: np.array([fn(s) for s in sub], float) for name, fn in mcqa_run.SIGNALS.items()}
            per[lab] = {"n": len(sub), "accuracy": float(correct.mean()),
                        "error_detection": M.error_detection_report(signals, correct, n_boot=n_boot, seed=seed)}
        result["by_judge_stratum"] = per
        rated = [(r, s) for r, s in joined if r.get("confidence") is not None]
        result["judge_confidence"] = {"n_rated": len(rated), "n_scored": len(joined)}
        if rated:
            correct = np.array([s["correct"] for _, s in rated], bool)
            uncertainty = {"1 - judge_confidence": np.array([1 - r["confidence"] / 100 for r, _ in rated]),
                           "entropy (same questions)": np.array([s["entropy"] for _, s in rated])}
            result["judge_confidence"]["error_detection"] = M.error_detection_report(
                uncertainty, correct, n_boot=n_boot, seed=seed)
    return result


def markdown(result: dict) -> str:
    lines = [f"Judge replies parsed: {100 * result['parse_rate']:.0f}% of {result['n']}; judge strata "
             + ", ".join(f"{k} {v}" for k, v in result["judge_strata"].items()) + "."]
    if "agreement_with_data_strata" in result:
        a = result["agreement_with_data_strata"]
        lines.append(f"Agreement with the data's own strata: {100 * a['fraction']:.0f}% "
                     f"(confusion data → judge: {json.dumps(a['confusion'])}).")
    if "by_judge_stratum" in result:
        lines += ["", "| judge stratum | n | accuracy | ROC-AUC entropy [95% CI] |", "|---|---:|---:|---|"]
        for lab, b in result["by_judge_stratum"].items():
            d = b["error_detection"]["entropy"]
            lo, hi = d["roc_auc_ci"]
            lines.append(f"| {lab} | {b['n']} | {b['accuracy']:.3f} | {d['roc_auc']:.3f} [{lo:.2f}, {hi:.2f}] |")
    jc = result.get("judge_confidence")
    if jc and "error_detection" in jc:
        d = jc["error_detection"]["1 - judge_confidence"]
        e = jc["error_detection"]["entropy (same questions)"]
        lines += ["", f"Judge confidence as an error predictor ({jc['n_rated']} of {jc['n_scored']} rated): "
                  f"ROC-AUC {d['roc_auc']:.3f} [{d['roc_auc_ci'][0]:.2f}, {d['roc_auc_ci'][1]:.2f}] vs entropy "
                  f"{e['roc_auc']:.3f} on the same questions."]
    elif jc:
        lines += ["", f"Judge confidence: none of {jc['n_scored']} replies gave a parsable [confidence: …]."]
    return "\n".join(lines) + "\n"


def read_scores(path: str | Path, questions: list[mcqa.Question], data: str) -> list[dict]:
    """The rows of a scoring run's scores.jsonl, checked against the judged questions: they must share ids, and
    a shared id must have been scored on the same question (content key); otherwise a `ConfigError` naming
    --scores, the files and the ids."""
    rows = JsonlStore(path, required=("id", "batch", "batch_rows")).complete_batches()
    content = {q.id: mcqa.content_hash(q) for q in questions}
    shared = [r for r in rows if r["id"] in content]
    if not shared:
        ours = ", ".join(list(content)[:3])
        theirs = ", ".join(r["id"] for r in rows[:3]) or "none"
        raise check.ConfigError(f"--scores: {path} shares no question ids with --data {data} (scores: {theirs}, …; "
                                f"data: {ours}, …): score the same questions first")
    other = [r["id"] for r in shared if r.get("content") != content[r["id"]]]
    if other:
        raise check.ConfigError(
            f"--scores: {path} scored other versions of {len(other)} questions of --data {data} (content keys "
            f"differ, or the file predates them): {', '.join(other[:5])}{' …' if len(other) > 5 else ''}; "
            "score the same data first")
    return rows


def run(config: JudgeConfig, out: str | Path, *, lm=None, mesh=None, progress: bool = False) -> dict:
    """Judge (or resume judging) `config` into OUT; returns the metrics (also OUT/strata_metrics.json) with the
    settings. `lm`: an already loaded judge instead of loading `config.judge` (on `mesh`). OUT is held by a
    `RunLock` for the call."""
    config.check()
    out = check.flag_out_dir("out", out)
    questions = check.flag_data("data", config.data, limit=config.limit)
    scores = None
    answers: dict[str, str] = {}
    if config.scores is not None:
        scores = read_scores(config.scores, questions, config.data)
        options = {q.id: q.options for q in questions}
        answers = {s["id"]: f"{s['pred']} ({options[s['id']][s['pred_index']]})" for s in mcqa_run.scored(scores)
                   if s["id"] in options}
    inputs = {"data": mcqa.identity(questions, config.data), "judge": api.fingerprint(config.judge)}
    with RunLock(out):
        settings = configs.settings(config)
        check_settings(out, settings, holds=["strata.jsonl"], what="judge labels")
        check_inputs(out, inputs, holds=["strata.jsonl"], what="judge labels")
        store = strata_store(out, writable=True)
        info = annotate(config, questions, answers, store, lm=lm, mesh=mesh, progress=progress)
        rows = store.complete_batches()
        result = compute_metrics(rows, scores, n_boot=config.n_boot, seed=config.seed)
        result.update(settings=settings, run=info)
        skipped = [r["id"] for r in rows if r.get("skipped")]
        if config.skip_long:
            result.update(n_skipped=len(skipped), skipped=skipped)
        write_json(out / "strata_metrics.json", result)
    return result
