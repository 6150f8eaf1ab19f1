"""merge_lora.py: merged model == base + adapter (resized vocabulary), both flag spellings, mismatched base refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from smart import trajectory as T
from smart.io import InputError
from smart.training import trainer as training

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_llama_dir):
    """A LoRA adapter with trained special-token rows (a few steps at a high learning rate, so nothing is zero)."""
    tmp = tmp_path_factory.mktemp("adapter")
    rows = [{"instruction": f"Question {i}?", "input": "", "output": T.render_answer(f"answer {i}", [])} for i in range(4)]
    data = tmp / "t.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return training.train(training.TrainArgs(
        train_file=str(data), output_dir=str(tmp / "lora"), model_name_or_path=str(tiny_llama_dir),
        use_special_tokens=True, use_lora=True, lora_rank=4, lora_dropout=0.0, learning_rate=5e-2,
        per_device_train_batch_size=2, max_train_steps=3, lr_scheduler_type="constant"))


def merge_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "merge_lora.py"), *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.parametrize("flags", [("--base-model-path", "--lora-path", "--target-model-path"), ("--base", "--lora", "--target")])
def test_merged_logits_equal_adapter_logits(tmp_path, tiny_llama_dir, adapter_dir, flags):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = tmp_path / "merged"
    run = merge_cli(flags[0], str(tiny_llama_dir), flags[1], str(adapter_dir), flags[2], str(target))
    assert run.returncode == 0, run.stderr[-2000:]
    merged = AutoModelForCausalLM.from_pretrained(target).eval()
    tokenizer = AutoTokenizer.from_pretrained(target)
    assert len(tokenizer) == merged.get_input_embeddings().num_embeddings > 49152
    assert tokenizer.convert_tokens_to_ids(T.EOG) in merged.generation_config.eos_token_id

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    base_embeddings = base.get_input_embeddings().weight.detach().clone()
    base.resize_token_embeddings(len(tokenizer))
    with_adapter = PeftModel.from_pretrained(base, adapter_dir).eval()
    text = T.format_prompt("Who wrote Hamlet?") + T.render_long(T.Trajectory(["hamlet"], [T.Passage("H", "text")],
                                                                              [T.Fact(1, False)], "x", []))
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert (ids >= base_embeddings.shape[0]).any()  # the probe uses the new special tokens
    with torch.no_grad():
        # the saved weights are W + BA, and the new-token rows, computed in float32: each within float32 rounding of
        # the exact (float64) merge. Logits are not compared that tightly: 3 steps at lr 5e-2 leave the tiny model so
        # ill-conditioned that one-ulp weight changes move some new-token logits by 2e-4 (seen on AVX2 CPUs)
        expected = with_adapter.double()(ids).logits
        exact = with_adapter.merge_and_unload().state_dict()
        saved = merged.state_dict()
        assert saved.keys() == exact.keys()
        for name, weight in saved.items():
            assert weight.dtype == torch.float32, name
            torch.testing.assert_close(weight.double(), exact[name], rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(merged.double()(ids).logits, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())
        merged.float()
    # the merge changed something: LoRA deltas and trained special-token rows are in the weights
    new_rows = merged.get_input_embeddings().weight[base_embeddings.shape[0]:]
    assert new_rows.abs().sum() > 0
    assert not torch.equal(merged.model.layers[0].self_attn.q_proj.weight,
                           AutoModelForCausalLM.from_pretrained(tiny_llama_dir).model.layers[0].self_attn.q_proj.weight)


@pytest.mark.parametrize("tiny_variant_dir", ["tied", "untied", "padded_untied"], indirect=True)
def test_trained_special_token_rows_survive_merging(tmp_path, tiny_variant_dir):
    """LoRA trains the special tokens' rows (the input embeddings, and an untied head's too); merging writes them."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    trajectory = T.Trajectory(["hamlet author"], [T.Passage("Hamlet", "A play by Shakespeare."), T.Passage("Paris", "A city.")],
                              [T.Fact(1, True, "Hamlet", "A play by Shakespeare."), T.Fact(2, False)], "Shakespeare", [1])
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"instruction": "Who wrote Hamlet?", "input": "", "output": T.render_long(trajectory)}) + "\n")
    adapter = training.train(training.TrainArgs(
        train_file=str(data), output_dir=str(tmp_path / "lora"), model_name_or_path=str(tiny_variant_dir),
        use_special_tokens=True, use_lora=True, lora_rank=4, lora_dropout=0.0, learning_rate=1e-2, max_train_steps=2,
        lr_scheduler_type="constant"))
    trained = load_file(adapter / "adapter_model.safetensors")
    assert not [k for k in trained if "base_layer" in k]  # the trained rows only, no whole embedding matrix
    training.merge_lora(str(tiny_variant_dir), str(adapter), str(tmp_path / "merged"))

    start, tokenizer = training.load_model_and_tokenizer(str(tiny_variant_dir))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    ids = training.special_token_ids(tokenizer)
    untied = not start.config.tie_word_embeddings
    modules = training.token_row_modules(merged)
    assert list(modules) == ["model.embed_tokens"] + ["lm_head"] * untied
    assert merged.get_input_embeddings().num_embeddings == start.get_input_embeddings().num_embeddings  # padded: kept
    for name, module in modules.items():
        rows, start_weight = module.weight.detach(), start.get_submodule(name).weight.detach()
        adapter_rows = trained[f"base_model.model.{name}.token_adapter.trainable_tokens_delta"]
        assert torch.equal(rows[ids], adapter_rows)  # the adapter's trained rows, carried over exactly
        assert not torch.equal(adapter_rows, start_weight[ids])  # ... and they did train
        others = torch.ones(rows.shape[0], dtype=torch.bool)
        others[ids] = False
        assert torch.equal(rows[others], start_weight[others])  # no other token's row moved
    if untied:
        assert not torch.equal(merged.lm_head.weight[ids], merged.get_input_embeddings().weight[ids])


def test_base_with_other_vocabulary_is_refused(tmp_path, tiny_llama_dir, adapter_dir):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    other = tmp_path / "other_base"
    LlamaForCausalLM(LlamaConfig(vocab_size=60000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(other)
    with pytest.raises(InputError, match="60000 embedding rows"):
        training.merge_lora(str(other), str(adapter_dir), str(tmp_path / "merged"))
    run = merge_cli("--base", str(other), "--lora", str(adapter_dir), "--target", str(tmp_path / "merged"))
    assert run.returncode == 2 and "not the model" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "merged").exists()


def test_not_an_adapter_folder(tmp_path, tiny_llama_dir):
    with pytest.raises(InputError, match="adapter_config.json"):
        training.merge_lora(str(tiny_llama_dir), str(tmp_path), str(tmp_path / "merged"))
