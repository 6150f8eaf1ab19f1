"""The embedded defaults: the dense SmolLM2 checkpoint is a working instruct model; corpus subsets are whole articles."""
from __future__ import annotations

import json

import pytest

from smart import defaults
from smart.retrieval.passages import PassageStore


def test_embedded_llm_answers_like_the_instruct_model(embedded_llm_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_llm_dir)
    model = AutoModelForCausalLM.from_pretrained(embedded_llm_dir)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])
    assert defaults.resolve_llm("embedded") == str(embedded_llm_dir)
    assert defaults.resolve_llm("meta-llama/Llama-2-7b-hf") == "meta-llama/Llama-2-7b-hf"


@pytest.mark.parametrize("max_articles", [5, 40])
def test_article_subset_keeps_whole_articles(tmp_path, embedded_passages, max_articles):
    n = defaults.write_article_subset(defaults.corpus_json(), tmp_path / "s.json", tmp_path / "s.tsv", max_articles)
    articles = json.loads((tmp_path / "s.json").read_text())
    store = PassageStore(tmp_path / "s.tsv")
    assert len(articles) == max_articles and len(store) == n >= max_articles
    assert {store.get_row(i)["title"] for i in range(len(store))} == {a["title"] for a in articles.values()}
