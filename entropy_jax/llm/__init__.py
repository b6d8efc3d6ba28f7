"""LLM core (Chapters 3–5): our own Flax NNX decoder for Llama, Qwen2/2.5, Qwen3 and Phi-3/4-mini.

    lm = entropy_jax.llm.load("smollm2-135m-instruct")          # embedded, offline
    logits_btv = lm.logits(input_ids, attention_mask)            # float32 [B, T, V]
    out = lm.generate(["What is 2+2?"], chat=True, max_new_tokens=32)
    out.texts, out.entropy                                       # per-token entropy, nats

Modules: `config` (LlmConfig + presets), `model` (decoder, pure `forward`), `params` (checkpoint key table),
`sharding` (mesh + partition rules), `generate` (KV cache, while-loop decode, entropy), `engine` (continuous
batching), `batch` (a JSONL file of prompts through the engine), `traces` (the one trace generator), `api` (`load`).
"""

from entropy_jax.llm.api import (
    Generation,
    LanguageModel,
    bucket,
    check_source,
    embedded_gguf,
    fingerprint,
    from_params,
    load,
    load_tokenizer,
)
from entropy_jax.llm.config import SUPPORTED, LlmConfig, RopeConfig, UnsupportedModelError
from entropy_jax.llm.generate import ENTROPY_SETTINGS, Sampling
from entropy_jax.llm.model import forward, init_params
from entropy_jax.llm.params import HF_TABLE, CheckpointError
from entropy_jax.llm.sharding import PARAM_RULES, make_mesh

__all__ = [
    "ENTROPY_SETTINGS", "HF_TABLE", "PARAM_RULES", "SUPPORTED", "CheckpointError", "Generation", "LanguageModel",
    "LlmConfig", "RopeConfig", "Sampling", "UnsupportedModelError", "bucket", "check_source", "embedded_gguf",
    "fingerprint", "forward", "from_params", "init_params", "load", "load_tokenizer", "make_mesh",
]
