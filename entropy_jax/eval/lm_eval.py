"""lm-evaluation-harness backend `entropy_jax`: our JAX decoder, with the full-vocabulary entropy of every request.

    python -m entropy_jax.eval.lm_eval run --model entropy_jax \\
        --model_args pretrained=smollm2-135m-instruct,dtype=float32 --batch_size 8 \\
        --tasks mmlu --output_path results/lm_eval --log_samples

`pretrained` is any source `entropy_jax.llm.load` accepts (the alias `smollm2-135m-instruct`, a Hugging Face
directory, a `.gguf` file, a hub id) or, from Python, a loaded `LanguageModel`. Other model_args: `dtype`
(float32 | bfloat16 | float16; "auto" = float32), `max_length` (context window, default the model's),
`max_gen_toks` (default 256), `add_bos_token`, `prefix_token_id`, `seed` (PRNG seed for sampled generation),
and the mesh axes `data`, `fsdp`, `tensor` (any ≠ 1 builds `entropy_jax.llm.make_mesh(data, fsdp, tensor)`;
one may be -1 = the remaining devices). Rows per forward pass come from lm-eval's own `--batch_size N` (its
default is 1; "auto" means 8 here); the CLI always passes it, so it cannot also be given in `--model_args`.

How lm-eval finds it: lm-eval 0.4.13 has no plugin or entry-point discovery for models (its registry is
filled from a fixed table in `lm_eval.models`), so the backend registers itself when this module is
imported. `python -m entropy_jax.eval.lm_eval ARGS` (or the console script `entropy-jax-lm-eval ARGS`) imports
it and hands ARGS to lm-eval's own CLI (`lm-eval run …`, or the legacy form without `run`); from Python,
`import entropy_jax.eval.lm_eval` and call `lm_eval.simple_evaluate(model="entropy_jax", …)`.

Semantics follow lm-eval's Hugging Face backend (`--model hf`) so numbers are comparable:

- loglikelihood: context and continuation are encoded TOGETHER and split at the context's own encoding
  (lm-eval's `TemplateLM._encode_pair`, trailing context spaces moved to the continuation), so
  " A" after "Answer:" is the token the model would actually read; an empty context gets the prefix token
  (BOS, else EOS). A pair longer than the context window loses tokens from the LEFT, as in HF
  (`(context + continuation)[-(max_length + 1):][:-1]` is fed; a warning counts them). Requests are sorted
  longest first, batched, bucketed and deduplicated (`entropy_jax.eval.continuations`).
- loglikelihood_rolling: lm-eval's rolling windows (`get_rolling_token_windows`, context length 1).
- generate_until: contexts left-truncated to `max_length − max_gen_toks` (as HF), greedy unless
  `do_sample`/`temperature > 0` (then nucleus `top_p`, key = `seed` folded with the batch); generation stops
  at EOS or at any token whose text contains a stop string, then the text is cut at the first stop string
  (`until` plus the EOS text, exactly HF's post-processing). Other generation kwargs (top_k, …) are an error.

Where the entropy appears. lm-eval logs, for each document, `arguments` (the request arguments), `resps`
and `filtered_resps`; responses must stay `(logprob, is_greedy)` pairs or strings because tasks unpack
them, and `resps` is stringified when written. So the backend appends ONE dict to each request's
`Instance.arguments`: in the `--log_samples` JSONL it is `arguments["gen_args_<i>"]["arg_<n>"]` with
n = 2 for loglikelihood and generate_until (after context and continuation / gen_kwargs) and n = 1 for
loglikelihood_rolling; in `simple_evaluate(...)["samples"]` it is the last element of
`arguments[i]`. It reads `{"entropy_jax": [record, …]}`, one record per response in `resps[i]` (several
only with `repeats`):

- loglikelihood: `entropy` (nats, full vocabulary, temperature 1, raw logits: `ENTROPY_SETTINGS`) of
  the distribution that predicts the FIRST continuation token — for multiple choice, the answer step;
  `token_entropies` and `token_logprobs` (one per continuation token), `n_context_tokens` (fed, after
  truncation), `n_continuation_tokens`, `truncated` (context tokens dropped on the left);
- generate_until: `entropy` of the first generated token, `token_entropies` / `token_logprobs` of the
  tokens that produced the returned text (`n_tokens` of them; `n_generated` before the stop-string cut),
  `n_context_tokens`, `truncated`;
- loglikelihood_rolling: `entropy` at the first token, `mean_entropy` and `n_tokens` over all scored
  tokens, `n_windows`.

The entropy settings themselves are in the results JSON (`config.entropy_jax.entropy_settings`, from
`get_model_info`). With `--use_cache`, cached responses are served without calling the model, so they
carry no record; the backend stores its cache entries under the original arguments (as HF does; lm-eval's
wrapper also writes each response under the arguments with the record, a key that is never looked up).
`entropy_jax.eval.log_samples.read_log_samples` turns the logged samples into Chapter 3 score rows.

Importing this module imports lm-eval (an optional extra: `pip install entropy_jax[lm-eval]`), never torch
(lm-eval itself may import torch to seed it); `import entropy_jax.eval` imports neither.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

import jax
import lm_eval.models  # noqa: F401  (fills lm-eval's registry first: it only does so while the registry is empty)
import numpy as np
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import model_registry
from lm_eval.models.utils import (
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
)

from entropy_jax.eval.continuations import ContinuationScore, ContinuationScorer

log = logging.getLogger(__name__)

NAME = "entropy_jax"
RECORD_KEY = "entropy_jax"
_GEN_KEYS = {"until", "max_gen_toks", "do_sample", "temperature", "top_p"}


def _plain_args(req) -> tuple:
    """A request's arguments without a record this backend attached earlier."""
    args = req.args
    if args and isinstance(args[-1], dict) and RECORD_KEY in args[-1]:
        args = args[:-1]
    return tuple(args)


def _attach(requests: Sequence, records: Sequence[dict]) -> None:
    """Append {"entropy_jax": [record per response]} to each distinct request's arguments."""
    by_request: dict[int, tuple] = {}
    for req, rec in zip(requests, records, strict=True):
        by_request.setdefault(id(req), (req, []))[1].append(rec)
    for req, recs in by_request.values():
        req.arguments = _plain_args(req) + ({RECORD_KEY: recs},)


def _batch_size(value) -> int:
    if value is None:
        return 8
    if isinstance(value, str) and value.startswith("auto"):
        log.warning("entropy_jax: batch_size=%r is not supported; using 8 (shapes are bucketed, so pick a "
                    "fixed batch_size that fits memory)", value)
        return 8
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"batch_size must be a positive integer or 'auto', got {value!r}") from None
    if size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {size}")
    return size


def _pad_stops(ids: Sequence[int]) -> tuple[int, ...]:
    """Stop ids padded with -1 (never generated) to a power of two, so stop sets share compilations."""
    n = 1 << max(0, len(ids) - 1).bit_length()
    return tuple(ids) + (-1,) * (n - len(ids))


class EntropyJaxLM(TemplateLM):
    """lm-eval `LM` over `entropy_jax.llm` (see the module docstring for arguments and logged records)."""

    def __init__(self, pretrained, dtype: str = "float32", batch_size=8, max_length: int | None = None,
                 max_gen_toks: int = 256, add_bos_token: bool | None = None, prefix_token_id: int | None = None,
                 data: int = 1, fsdp: int = 1, tensor: int = 1, seed: int = 0, device=None, max_batch_size=None,
                 trust_remote_code: bool = False):
        super().__init__()
        from entropy_jax import llm

        if trust_remote_code:
            raise ValueError("trust_remote_code: the entropy_jax backend never runs checkpoint code (the decoder "
                             "is ours); drop --trust_remote_code")
        if dtype == "auto":  # lm-eval's common dtype=auto: our default precision
            dtype = "float32"
        if device is not None:
            log.info("entropy_jax: device=%r ignored; JAX places the model (mesh axes data/fsdp/tensor)", device)
        if isinstance(pretrained, llm.LanguageModel):
            self.lm = pretrained
        else:
            mesh = None if (data, fsdp, tensor) == (1, 1, 1) else llm.make_mesh(int(data), int(fsdp), int(tensor))
            self.lm = llm.load(str(pretrained), dtype=dtype, mesh=mesh)
        if self.lm.tokenizer is None:
            raise ValueError(f"{self.lm.source}: no tokenizer found; lm-eval requests are text")
        self.tokenizer = self.lm.tokenizer
        self._batch_size = _batch_size(batch_size)
        self._scorer = ContinuationScorer(self.lm, batch_size=self._batch_size, max_length=max_length)
        self._max_gen_toks = int(max_gen_toks)
        self.add_bos_token = add_bos_token
        self.custom_prefix_token_id = prefix_token_id
        self._key = jax.random.key(int(seed))
        self._n_generate_batches = 0
        self._token_texts: list[str] | None = None
        self._last_scores: list[ContinuationScore] = []

    # ------------------------------------------------------------------ properties lm-eval reads
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        if self.custom_prefix_token_id is not None:
            return int(self.custom_prefix_token_id)
        if self.tokenizer.bos_token_id is not None:
            return self.tokenizer.bos_token_id
        return self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._scorer.max_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    @property
    def trace_counts(self) -> dict:
        """Compilations so far: continuation scoring (this backend) and generation (`LanguageModel`)."""
        return {**self._scorer.trace_counts, **self.lm.trace_counts}

    def get_model_info(self) -> dict:
        from entropy_jax.llm import ENTROPY_SETTINGS

        c = self.lm.config
        mesh = None if self.lm.mesh is None else dict(self.lm.mesh.shape)
        return {RECORD_KEY: {
            "source": self.lm.source, "family": c.family, "dtype": str(np.dtype(self.lm.dtype)),
            "vocab_size": c.vocab_size, "max_length": self.max_length, "batch_size": self.batch_size, "mesh": mesh,
            "entropy_settings": dict(ENTROPY_SETTINGS, vocab_size=c.vocab_size),
        }}

    # ------------------------------------------------------------------ tokenization (as lm-eval's HF backend)
    def _special_kwargs(self, add_special_tokens: bool | None, string: str) -> dict:
        if add_special_tokens is not None:
            return {"add_special_tokens": add_special_tokens}
        prefix = self.tokenizer.decode(self.prefix_token_id)
        if prefix and string.startswith(prefix):  # the text already carries its BOS
            return {"add_special_tokens": False}
        return {} if self.add_bos_token is None else {"add_special_tokens": bool(self.add_bos_token)}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None,
                   **kwargs) -> list[int]:
        ids = self.tokenizer.encode(string, **self._special_kwargs(add_special_tokens, string))
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    # ------------------------------------------------------------------ loglikelihood
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        scores = self._scorer.score([(ctx, cont) for _, ctx, cont in requests])
        n_cut = sum(s.truncated > 0 for s in scores)
        if n_cut:
            log.warning("entropy_jax: %d of %d requests exceed the context window of %d tokens; their contexts "
                        "were truncated from the left", n_cut, len(scores), self.max_length)
        answers = []
        for (request_str, _, _), s in zip(requests, scores, strict=True):
            answer = (s.logprob, s.is_greedy)
            if request_str is not None:
                self.cache_hook.add_partial("loglikelihood", request_str, answer)
            answers.append(answer)
        self._last_scores = scores
        return answers

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        for req in requests:
            req.arguments = _plain_args(req)
        answers = super().loglikelihood(requests, disable_tqdm=True)
        _attach(requests, [{
            "entropy": s.entropy, "token_entropies": list(s.token_entropies), "token_logprobs": list(s.token_logprobs),
            "n_context_tokens": s.n_context_tokens, "n_continuation_tokens": len(s.token_logprobs),
            "truncated": s.truncated,
        } for s in self._last_scores])
        return answers

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        strings = [_plain_args(req)[0] for req in requests]
        windows, owner = [], []
        for i, string in enumerate(strings):
            for w in lm_utils.get_rolling_token_windows(token_list=self.tok_encode(string),
                                                        prefix_token=self.prefix_token_id,
                                                        max_seq_len=self.max_length, context_len=1):
                windows.append(lm_utils.make_disjoint_window(w))
                owner.append(i)
        scores = self._scorer.score(windows)
        per = [[] for _ in strings]
        for i, s in zip(owner, scores, strict=True):
            per[i].append(s)
        totals, records = [], []
        for string, ss in zip(strings, per, strict=True):
            total = float(sum(s.logprob for s in ss))
            ent = [e for s in ss for e in s.token_entropies]
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
            totals.append(total)
            records.append({"entropy": ent[0] if ent else None, "mean_entropy": float(np.mean(ent)) if ent else None,
                            "n_tokens": len(ent), "n_windows": len(ss)})
        _attach(requests, records)
        return totals

    # ------------------------------------------------------------------ generation
    def _stop_ids(self, until: Sequence[str]) -> tuple[int, ...]:
        """EOS ids, then every token whose own text contains a stop string: HF's stopping criterion fires on
        such a token too, and the text is cut at the stop string either way, so stopping there changes nothing."""
        stops = [s for s in until if s]
        ids = list(self.lm.stop_token_ids())
        if stops:
            if self._token_texts is None:
                self._token_texts = [self.tokenizer.decode([i]) for i in range(len(self.tokenizer))]
            ids += [i for i, t in enumerate(self._token_texts) if any(s in t for s in stops)]
        return _pad_stops(list(dict.fromkeys(ids)))

    def _n_tokens_for(self, tokens: np.ndarray, n_chars: int) -> int:
        """Fewest leading tokens whose decoded text reaches n_chars characters (binary search)."""
        lo, hi = 0, len(tokens)
        while lo < hi:
            mid = (lo + hi) // 2
            if len(self.tok_decode(tokens[:mid])) >= n_chars:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        args = [_plain_args(req) for req in requests]
        groups: dict[str, list[int]] = {}
        for i, (_, gen_kwargs) in enumerate(args):
            if not isinstance(gen_kwargs, dict):
                raise TypeError(f"generate_until request {i}: gen_kwargs must be a dict, got {type(gen_kwargs)}")
            groups.setdefault(json.dumps(gen_kwargs, sort_keys=True, default=str), []).append(i)
        eos_text = self.tok_decode([self.eot_token_id], skip_special_tokens=False)
        texts: list[str | None] = [None] * len(args)
        records: list[dict | None] = [None] * len(args)
        for members in groups.values():
            gen_kwargs = args[members[0]][1]
            unknown = set(gen_kwargs) - _GEN_KEYS - {"max_new_tokens", "max_tokens", "max_completion_tokens"}
            if unknown:
                raise ValueError(f"generation kwargs {sorted(unknown)} are not supported by the entropy_jax backend "
                                 f"(supported: {sorted(_GEN_KEYS)})")
            kw = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            until = handle_stop_sequences(kw.pop("until", None), eos=eos_text)
            max_new = int(kw.pop("max_gen_toks"))
            temperature = float(kw.get("temperature", 0.0)) if kw.get("do_sample") else 0.0
            top_p = float(kw.get("top_p", 1.0) or 1.0)
            max_ctx = self.max_length - max_new
            if max_ctx < 1:
                raise ValueError(f"max_gen_toks={max_new} leaves no room for a context in the window of "
                                 f"{self.max_length} tokens")
            stop_ids = self._stop_ids(until)
            encoded = {i: self.tok_encode(args[i][0]) for i in members}
            order = sorted(members, key=lambda i: (-len(encoded[i]), args[i][0]))
            for start in range(0, len(order), self.batch_size):
                chunk = order[start: start + self.batch_size]
                prompts = [encoded[i][-max_ctx:] for i in chunk]
                # padded with copies of the longest prompt, so every batch of a group has one compiled shape
                padded = prompts + [prompts[0]] * (self.batch_size - len(prompts))
                key = jax.random.fold_in(self._key, self._n_generate_batches)
                self._n_generate_batches += 1
                out = self.lm.generate(padded, max_new_tokens=max_new, temperature=temperature, top_p=top_p,
                                       key=key if temperature > 0 else None, stop_token_ids=stop_ids)
                for r, i in enumerate(chunk):
                    tokens = out.tokens[r][out.valid[r]]
                    text = postprocess_generated_text(out.texts[r], until, None)
                    k = self._n_tokens_for(tokens, len(text)) if text != out.texts[r] else len(tokens)
                    texts[i] = text
                    records[i] = {
                        "entropy": float(out.entropy[r, 0]), "token_entropies": out.entropy[r, :k].tolist(),
                        "token_logprobs": out.log_prob[r, :k].tolist(), "n_tokens": k,
                        "n_generated": int(out.valid[r].sum()), "n_context_tokens": len(prompts[r]),
                        "truncated": len(encoded[i]) - len(prompts[r]),
                    }
                    self.cache_hook.add_partial("generate_until", args[i], text)
        _attach(requests, records)
        return texts


def register() -> None:
    """Register `entropy_jax` in lm-eval's model registry (idempotent; a lazy path to this module, so a run
    through `python -m entropy_jax.eval.lm_eval` and a later import resolve to the same class)."""
    if NAME not in model_registry:
        model_registry.register(NAME, target=f"{__spec__.name if __spec__ else __name__}:EntropyJaxLM")


def main(argv: Sequence[str] | None = None) -> None:
    """lm-eval's command line with the `entropy_jax` backend registered: `python -m entropy_jax.eval.lm_eval
    run --model entropy_jax --model_args pretrained=SOURCE --tasks …` (any `lm-eval` arguments)."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


register()

if __name__ == "__main__":
    main()

__all__ = ["NAME", "RECORD_KEY", "EntropyJaxLM", "main", "register"]
