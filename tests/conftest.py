"""Shared fixtures: the embedded defaults (prepared once into $SMART_DATA) and a tiny Llama for fast tests."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def embedded_llm_dir():
    """The dense SmolLM2-135M-Instruct checkpoint (prepared once, reused across runs)."""
    from smart import defaults
    return defaults.prepare_llm()


@pytest.fixture(scope="session")
def embedded_passages():
    """The embedded corpus as a psgs_w100-format TSV."""
    from smart import defaults
    return defaults.prepare_passages()


@pytest.fixture(scope="session")
def encoder_dir():
    from smart import defaults
    return defaults.encoder_dir()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, embedded_llm_dir):
    """A 2-layer, 64-wide Llama with SmolLM2's tokenizer: real code paths, seconds to train."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = AutoTokenizer.from_pretrained(embedded_llm_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# variants of the tiny Llama (config changes): the output head untied from the input embeddings (as in Llama-2),
# and a vocabulary padded beyond the tokenizer (SmolLM2's 49152 tokens + 64 spare rows)
TINY_VARIANTS = {"tied": {}, "untied": {"tie_word_embeddings": False},
                 "padded_untied": {"tie_word_embeddings": False, "vocab_size": 49152 + 64}}


@pytest.fixture(scope="session")
def tiny_variant_dir(request, tmp_path_factory, tiny_llama_dir):
    """The tiny Llama variant named by the (indirect) parameter, freshly initialized, same tokenizer."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    changes = TINY_VARIANTS[request.param]
    if not changes:
        return tiny_llama_dir
    out = tmp_path_factory.mktemp(f"tiny_llama_{request.param}")
    config = AutoConfig.from_pretrained(tiny_llama_dir)
    for name, value in changes.items():
        setattr(config, name, value)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(out)
    return out
