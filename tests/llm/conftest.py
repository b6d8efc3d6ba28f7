"""Tiny random checkpoints of every supported family, built in-process with transformers + CPU torch.

Nothing is downloaded: each model is a random `transformers` model of a few thousand parameters, saved with
`save_pretrained` (safetensors) to a session temp directory and loaded back by `entropy_jax.llm.load`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 160
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)

# Each family with the feature that distinguishes it switched on: llama3 rope scaling (Llama 3.x), q/k/v
# biases (Qwen2), q/k norms and head_dim ≠ D/H (Qwen3), partial rotary + longrope (Phi-3/4) whose
# original context (16) is short enough that generation crosses into the long factors, explicit head_dim and
# a sliding window (Mistral), YaRN scaling over an original context (16) shorter than the sequences (Qwen3).
FAMILIES = {
    "llama": ("LlamaConfig", dict(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
                                  rope_theta=5000.0)),
    "llama_tied": ("LlamaConfig", dict(tie_word_embeddings=True, attention_bias=True, mlp_bias=True)),
    "qwen2": ("Qwen2Config", dict()),
    "qwen3": ("Qwen3Config", dict(head_dim=32, tie_word_embeddings=True)),
    "phi3": ("Phi3Config", dict(partial_rotary_factor=0.75, original_max_position_embeddings=16,
                                max_position_embeddings=128,
                                rope_scaling={"type": "longrope", "short_factor": [1.0, 1.1, 1.2, 1.3, 1.5, 2.0],
                                              "long_factor": [2.0, 2.5, 3.0, 4.0, 5.0, 6.0]})),
    "phi3_window": ("Phi3Config", dict(sliding_window=6)),
    "mistral": ("MistralConfig", dict(head_dim=32, sliding_window=7)),
    "qwen3_yarn": ("Qwen3Config", dict(head_dim=32, max_position_embeddings=64,
                                       rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                     "original_max_position_embeddings": 16})),
}


def build(family: str, directory: Path, seed: int = 0, **overrides) -> Path:
    """Save a seeded tiny random model of `family` (a FAMILIES key) to `directory` and return it."""
    cls_name, extra = FAMILIES[family]
    config = getattr(transformers, cls_name)(**{**COMMON, **extra, **overrides})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # random-init norms are all ones; perturb them so the norm weights are tested too
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """tiny(family) → directory of a saved tiny random checkpoint (built once per session and family)."""
    cache: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in cache:
            cache[family] = build(family, tmp_path_factory.mktemp(family))
        return cache[family]

    return get


def reference(directory: Path):
    """transformers' own model for a saved directory, fp32, eval mode."""
    return transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()


def ragged_batch(rng: np.random.Generator, lengths, vocab: int = VOCAB):
    """Token lists of the given lengths (ids ≥ 3, so no pad/bos/eos) and their left-padded ids + mask."""
    prompts = [rng.integers(3, vocab, size=n).tolist() for n in lengths]
    t = max(lengths)
    ids = np.zeros((len(lengths), t), np.int64)
    mask = np.zeros((len(lengths), t), np.int64)
    for i, p in enumerate(prompts):
        ids[i, t - len(p):] = p
        mask[i, t - len(p):] = 1
    return prompts, ids, mask


def config_json(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def char_tokenizer():
    """A character-level fast tokenizer with ChatML special tokens and a chat template, built offline."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {t: i for i, t in enumerate(specials + chars)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                  bos_token="<|im_start|>", eos_token="<|im_end|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory):
    """tiny_chat(family) → directory with a tiny random model AND a character-level chat tokenizer."""
    cache: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in cache:
            tok = char_tokenizer()
            d = build(family, tmp_path_factory.mktemp(family + "_chat"), vocab_size=len(tok),
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
            tok.save_pretrained(d)
            cache[family] = d
        return cache[family]

    return get
