"""Tiny chat models for the fine-tuning tests (built in-process, offline; see tests/llm/conftest.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from tests.llm.conftest import build, char_tokenizer


def tiny_chat_model(directory, family: str = "llama", seed: int = 0, **overrides):
    """A saved tiny random `family` model with the character-level chat tokenizer; long enough context for
    chain-of-thought examples."""
    tok = char_tokenizer()
    kw = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
              eos_token_id=tok.eos_token_id, max_position_embeddings=1024)
    build(family, directory, seed=seed, **(kw | overrides))
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def student_dir(tmp_path_factory):
    """A tiny Llama chat model (the default student of these tests)."""
    return tiny_chat_model(tmp_path_factory.mktemp("student"))


@pytest.fixture(scope="session")
def student(student_dir):
    from entropy_jax import llm

    return llm.load(student_dir)
