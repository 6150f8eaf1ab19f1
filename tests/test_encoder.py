"""The encoder equals a direct transformer forward + mean pooling over the attention mask."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from smart.defaults import cpu_supports_bf16
from smart.retrieval.encoder import Encoder, normalize_text, prepare_text, resolve_dtype

TEXTS = [
    "Paris is the capital of France.",
    "A much longer passage about the history of the Roman Empire, its emperors, its provinces, its roads and the "
    "slow decline that followed the crisis of the third century, told in many words to force padding in a batch.",
    "Gold",
    "The mitochondrion is the powerhouse of the cell, producing ATP through oxidative phosphorylation.",
    "Who wrote Hamlet?",
]


@pytest.fixture(scope="module")
def encoder(encoder_dir):
    return Encoder(str(encoder_dir), device="cpu", max_length=64, dtype="float32")  # exact: checks the pooling math


def reference_mean_pooling(model_dir, texts, max_length=64) -> np.ndarray:
    """One padded batch through AutoModel, then Contriever's mean pooling."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    hidden = hidden.masked_fill(~batch["attention_mask"][..., None].bool(), 0.0)
    return (hidden.sum(dim=1) / batch["attention_mask"].sum(dim=1)[..., None]).numpy()


def test_equals_direct_forward_and_mean_pooling(encoder, encoder_dir):
    reference = reference_mean_pooling(encoder_dir, TEXTS)
    raw = Encoder(str(encoder_dir), device="cpu", max_length=64, normalize=False, dtype="float32")
    np.testing.assert_allclose(raw.encode(TEXTS, batch_size=2), reference, atol=1e-4)
    # MiniLM's sentence-transformers config asks for L2 normalization on top: "auto" applies it.
    assert encoder.l2_normalize and not raw.l2_normalize
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(encoder.encode(TEXTS, batch_size=2), unit, atol=1e-5)


def test_sorted_batching_keeps_input_order(encoder):
    sorted_out = encoder.encode(TEXTS, batch_size=2, sort_by_length=True)
    unsorted_out = encoder.encode(TEXTS, batch_size=2, sort_by_length=False)
    single = np.stack([encoder.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(sorted_out, single, atol=1e-5)
    np.testing.assert_allclose(unsorted_out, single, atol=1e-5)
    assert sorted_out.dtype == np.float32 and sorted_out.shape == (len(TEXTS), 384)


def test_auto_precision_on_cpu_agrees_with_float32(encoder, encoder_dir):
    expected = "bfloat16" if cpu_supports_bf16() else "float32"
    assert resolve_dtype("auto", "cpu") == expected and resolve_dtype("auto", "cuda:0") == "float16"
    auto = Encoder(str(encoder_dir), device="cpu", max_length=64)
    assert next(auto.model.parameters()).dtype == getattr(torch, expected)
    cosine = (auto.encode(TEXTS, batch_size=2) * encoder.encode(TEXTS, batch_size=2)).sum(axis=1)
    assert cosine.min() > 0.999  # unit vectors: the bf16 embeddings point where the float32 ones do


def test_prepare_text_as_contriever():
    assert prepare_text("is a city.", "Paris") == "Paris is a city."
    assert prepare_text("is a city.", None) == "is a city."
    assert prepare_text("Is A City.", "Paris", lowercase=True) == "paris is a city."
    assert normalize_text("\u201cQuoted\u201d \u2013 it\u2019s\u2026 \ufb01ne") == "\"Quoted\" - it's... fine"
    assert prepare_text("\u201cx\u201d", "T", normalize=True) == 'T "x"'


def test_empty_input(encoder):
    assert encoder.encode([]).shape == (0, 384)
