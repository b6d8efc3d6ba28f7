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
judge_stratum; a batch store, resumed like the scoring run) and OUT/strata_metrics.json: parse rate,
agreement with the data's own strata, and — with `scores` — the scored model's accuracy and every uncertainty
signal's error detection per judge stratum, plus the judge's confidence evaluated as an error predictor
exactly like entropy (ROC-AUC with a bootstrap interval, PRR, AURC).

Prompt format (`JudgeConfig.prompt`, `instruction`; recorded in the settings): chat (the judge's chat template,
the default), plain (the same text with no template: probes end in "\\nAnswer:" and the Yes/No token is read
after it, a generated reply starts on a new line) or mmlu (plain, the rated question in lm-eval's MMLU layout);
an instruction, when given, comes before every judge prompt.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from entropy_jax import configs
from entropy_jax.data import mcqa
from entropy_jax.eval import mcqa_run
from entropy_jax.eval import metrics as M
from entropy_jax.llm import prompts, scoring
from entropy_jax.stores import JsonlStore, RunLock, check_settings, write_json

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


def annotate(config: JudgeConfig, questions: list[mcqa.Question], answers: dict[str, str], store: JsonlStore, *,
             lm=None, mesh=None, progress: bool = False) -> dict:
    """Judge every batch of `questions` not yet in `store` (writable); `answers` maps ids to another model's
    answers ("B (Paris)"), used when `config.scores` is set."""
    from tqdm.auto import tqdm

    fmt = judge_format(config)
    have = {r["batch"] for r in store.complete_batches()}
    n_batches = -(-len(questions) // config.batch_size)
    todo = [b for b in range(n_batches) if b not in have]
    if not todo:
        return {}
    if lm is None:
        import entropy_jax.llm as llm

        lm = llm.load(config.judge, dtype=config.dtype, mesh=mesh)
    with tqdm(total=len(todo) * config.batch_size, disable=not progress, desc="judging", unit="q") as bar:
        for b in todo:
            chunk = questions[b * config.batch_size: (b + 1) * config.batch_size]
            rows = []
            if config.mode == "probe":
                for q, ratings in zip(chunk, _probe_batch(lm, chunk, answers, config.scores is not None, fmt)):
                    rows.append({"id": q.id, "batch": b, "batch_rows": len(chunk), "judge_output": None,
                                 **ratings, "judge_stratum": stratum(ratings), "data_stratum": q.stratum})
            else:
                texts = [judge_prompt(q, answers.get(q.id) if config.scores else None, fmt) for q in chunk]
                if fmt.chat:
                    g = lm.generate(texts, chat=True, max_new_tokens=config.max_new_tokens)
                else:  # the rendered text as is, no special tokens added (as scoring reads prompts)
                    ids = [lm.tokenizer(judge_input(lm.tokenizer, t, fmt), add_special_tokens=False)["input_ids"]
                           for t in texts]
                    g = lm.generate(ids, max_new_tokens=config.max_new_tokens)
                for i, q in enumerate(chunk):
                    ratings = parse(g.texts[i])
                    rows.append({"id": q.id, "batch": b, "batch_rows": len(chunk), "judge_output": g.texts[i],
                                 **ratings, "judge_stratum": stratum(ratings), "data_stratum": q.stratum,
                                 "judge_mean_entropy": float(g.mean_entropy()[i])})
            store.append(rows)
            bar.update(len(chunk))
    return {"judge_load_s": lm.load_seconds}


def compute_metrics(rows: list[dict], scores: list[dict] | None, *, n_boot: int, seed: int) -> dict:
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


def run(config: JudgeConfig, out: str | Path, *, lm=None, mesh=None, progress: bool = False) -> dict:
    """Judge (or resume judging) `config` into OUT; returns the metrics (also OUT/strata_metrics.json) with the
    settings. `lm`: an already loaded judge instead of loading `config.judge` (on `mesh`). OUT is held by a
    `RunLock` for the call."""
    if config.mode not in MODES:
        raise ValueError(f"mode {config.mode!r}; use 'generate' or 'probe'")
    judge_format(config)  # a bad --prompt fails before anything is written
    out = Path(out)
    with RunLock(out):
        settings = configs.settings(config)
        check_settings(out, settings, holds=["strata.jsonl"], what="judge labels")
        questions = mcqa.load(config.data, limit=config.limit)
        scores = None
        answers: dict[str, str] = {}
        if config.scores is not None:
            if not Path(config.scores).exists():
                raise FileNotFoundError(f"--scores {config.scores} does not exist (run launch.mcqa_entropy first)")
            scores = JsonlStore(config.scores, required=("id", "batch", "batch_rows")).complete_batches()
            options = {q.id: q.options for q in questions}
            answers = {s["id"]: f"{s['pred']} ({options[s['id']][s['pred_index']]})" for s in scores
                       if s["id"] in options}
        store = strata_store(out, writable=True)
        info = annotate(config, questions, answers, store, lm=lm, mesh=mesh, progress=progress)
        rows = store.complete_batches()
        result = compute_metrics(rows, scores, n_boot=config.n_boot, seed=config.seed)
        result.update(settings=settings, run=info)
        write_json(out / "strata_metrics.json", result)
    return result
