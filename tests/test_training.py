"""Trajectory learning: loss mask at token level, packing equivalence, learning, resume, bad input, CLIs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from smart import trajectory as T
from smart.io import InputError
from smart.training import trainer as training

REPO = Path(__file__).resolve().parent.parent
PASSAGES = [T.Passage("Hamlet", "Hamlet is a tragedy written by William Shakespeare."),
            T.Passage("Paris", "Paris is the capital and largest city of France.")]
LONG = T.Trajectory(["who wrote hamlet", "hamlet author"], PASSAGES,
                    [T.Fact(1, True, "Hamlet", "Hamlet is a tragedy written by William Shakespeare."), T.Fact(2, False)],
                    "William Shakespeare", [1])


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.add_special_tokens({"additional_special_tokens": T.SPECIAL_TOKENS}, replace_extra_special_tokens=False)
    return tok


def supervised_text(tokenizer, encoded: dict) -> str:
    return tokenizer.decode([t for t in encoded["labels"] if t != training.IGNORE_INDEX])


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------- mask
def test_prompt_is_masked_and_target_supervised(tokenizer):
    example = training.Example("1", T.format_prompt("Who wrote Hamlet?"), "<|Generator|>:\nShakespeare</eog>")
    enc = training.encode(example, tokenizer, 512)
    n_prompt = len(tokenizer(example.prompt)["input_ids"])
    assert enc["labels"][:n_prompt] == [training.IGNORE_INDEX] * n_prompt  # no off-by-two: every prompt token masked
    assert enc["labels"][n_prompt:] == enc["input_ids"][n_prompt:]
    assert supervised_text(tokenizer, enc) == example.target
    assert enc["input_ids"][-1] == tokenizer.convert_tokens_to_ids(T.EOG)


def test_one_retrieval_block_masked_tags_kept(tokenizer):
    target = T.render_long(LONG)
    enc = training.encode(training.Example("1", T.format_prompt("Who wrote Hamlet?"), target), tokenizer, 1024)
    body = target[target.index(T.RETRIEVAL_OPEN) + len(T.RETRIEVAL_OPEN):target.index(T.RETRIEVAL_CLOSE)]
    assert supervised_text(tokenizer, enc) == target.replace(body, "")
    labels = enc["labels"]
    open_id, close_id = tokenizer.convert_tokens_to_ids([T.RETRIEVAL_OPEN, T.RETRIEVAL_CLOSE])
    i, j = enc["input_ids"].index(open_id), enc["input_ids"].index(close_id)
    assert labels[i] == open_id and labels[j] == close_id  # the model learns to open and close the block
    assert set(labels[i + 1:j]) == {training.IGNORE_INDEX}


def test_two_blocks_use_the_next_closing_tag(tokenizer):
    block = T.render_retrieval(PASSAGES)
    between = "\n\n<|Locator|>:\nstep between the blocks</eol>\n\n"
    target = f"<|Reconstructor|>:\nSearch(a)</eor>\n\n{block}{between}{block}\n\n<|Generator|>:\nx</eog>"
    enc = training.encode(training.Example("1", T.format_prompt("q"), target), tokenizer, 1024)
    body = block[len(T.RETRIEVAL_OPEN):-len(T.RETRIEVAL_CLOSE)]
    text = supervised_text(tokenizer, enc)
    assert text == target.replace(body, "")
    assert "step between the blocks" in text and "Shakespeare" not in text and "France" not in text


def test_truncation_inside_a_block_stays_masked(tokenizer):
    target = T.render_long(LONG)
    prompt = T.format_prompt("Who wrote Hamlet?")
    full = training.encode(training.Example("1", prompt, target), tokenizer, 1024)
    open_at = full["input_ids"].index(tokenizer.convert_tokens_to_ids(T.RETRIEVAL_OPEN))
    cut = training.encode(training.Example("1", prompt, target), tokenizer, open_at + 6)
    assert len(cut["input_ids"]) == open_at + 6
    assert cut["labels"][open_at] != training.IGNORE_INDEX
    assert set(cut["labels"][open_at + 1:]) == {training.IGNORE_INDEX}


def test_mask_without_special_tokens(tiny_llama_dir):
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(tiny_llama_dir)
    target = T.render_long(LONG)
    enc = training.encode(training.Example("1", T.format_prompt("Who wrote Hamlet?"), target), plain, 1024)
    text = supervised_text(plain, enc)
    assert "Shakespeare." not in text.split("<|Locator|>")[0] and "France" not in text
    assert "Search(who wrote hamlet" in text and "[Cite]: [1]" in text


def test_examples_without_supervised_tokens_are_dropped_and_counted(tokenizer):
    long_prompt = training.Example("1", T.format_prompt("word " * 300), "x</eog>")
    ok = training.Example("2", T.format_prompt("q"), "x</eog>")
    kept, dropped = training.encode_all([long_prompt, ok, long_prompt], tokenizer, 64)
    assert (len(kept), dropped) == (1, 2)


# ----------------------------------------------------------------------------------------------- input errors
@pytest.mark.parametrize("row,field,message", [
    ({"input": "", "output": "x</eog>"}, "instruction", "missing"),
    ({"instruction": "q", "input": ""}, "output", "missing"),
    ({"instruction": "q", "input": "", "output": "  "}, "output", "empty output"),
    ({"instruction": "q", "input": 3, "output": "x"}, "input", "expected str"),
    ({"instruction": "q", "output": "<retrieval>a</retrieval><retrieval>b"}, "output", "never closed"),
    ({"instruction": "q", "output": "a</retrieval><retrieval>b"}, "output", "unbalanced"),
])
def test_bad_records_name_file_line_field(tmp_path, row, field, message):
    path = write_jsonl(tmp_path / "t.jsonl", [{"instruction": "q", "input": "", "output": "fine</eog>"}, row])
    with pytest.raises(InputError, match=rf"t.jsonl:2 field '{field}'.*{message}"):
        training.load_examples(path)


def test_json_list_and_max_samples(tmp_path):
    rows = [{"instruction": f"q{i}", "input": "", "output": "a</eog>"} for i in range(5)]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(rows))
    examples = training.load_examples(path, max_samples=3)
    assert [e.prompt for e in examples] == [T.format_prompt(f"q{i}") for i in range(3)]


def test_cli_bad_input_exits_2_without_traceback(tmp_path, tiny_llama_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q", "input": "", "output": "x"}\n{"instruction": "q"\n')
    run = subprocess.run([sys.executable, str(REPO / "multi_agent/finetune.py"), "--train_file", str(bad),
                          "--output_dir", str(tmp_path / "out"), "--model_name_or_path", str(tiny_llama_dir)],
                         capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 2
    assert "bad.jsonl:2" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("script", ["multi_agent/finetune.py", "merge_lora.py"])
def test_cli_help(script):
    run = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True, text=True)
    assert run.returncode == 0
    assert "--output_dir" in run.stdout if "finetune" in script else "--target-model-path" in run.stdout


# ----------------------------------------------------------------------------------------------- packing
@pytest.mark.parametrize("attn", ["sdpa", "eager", training.PACKED_SDPA])
def test_packing_equals_padded_and_separate_examples(tiny_llama_dir, tokenizer, attn):
    from transformers import AutoModelForCausalLM

    if attn == training.PACKED_SDPA:
        training.register_packed_attention()
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation=attn).eval()
    training.add_special_tokens(model, tokenizer)
    examples = [training.Example(str(i), T.format_prompt(q), t) for i, (q, t) in enumerate([
        ("Who wrote Hamlet?", T.render_long(LONG)), ("Capital of France?", "<|Generator|>:\nParis</eog>"),
        ("Hamlet author?", T.render_intent(["hamlet author"]))])]
    features, _ = training.encode_all(examples, tokenizer, 1024)
    assert len({len(f["input_ids"]) for f in features}) == 3  # different lengths, so padding is exercised
    with torch.no_grad():
        packed, n_packed = training.lm_loss(model, training.collate_packed(features))
        padded, n_padded = training.lm_loss(model, training.collate_padded(features, tokenizer.eos_token_id))
        sums = [training.lm_loss(model, training.collate_packed([f])) for f in features]
        # attention isolation: the last example's logits alone == inside the pack
        alone = model(torch.tensor([features[-1]["input_ids"]])).logits[0]
        batch = training.collate_packed(features)
        inside = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
    separate = sum(loss * n for loss, n in sums) / sum(n for _, n in sums)
    assert n_packed == n_padded == sum(n for _, n in sums)
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed, separate, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(inside[-len(alone):], alone, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------- special tokens
def special_rows(model, tokenizer) -> dict[str, torch.Tensor]:
    """The special tokens' rows in each module holding token rows (input embeddings; an untied head), by name."""
    ids = training.special_token_ids(tokenizer)
    return {name: m.weight[ids].detach().clone() for name, m in training.token_row_modules(model).items()}


@pytest.mark.parametrize("tiny_variant_dir", ["tied", "untied", "padded_untied"], indirect=True)
def test_new_token_rows_start_at_the_mean_of_their_pieces(tiny_variant_dir):
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_variant_dir)
    tok = AutoTokenizer.from_pretrained(tiny_variant_dir)
    n_tokens, rows = len(tok), model.get_input_embeddings().num_embeddings
    pieces = [tok(t, add_special_tokens=False)["input_ids"] for t in T.SPECIAL_TOKENS]
    before = {name: m.weight.detach().clone() for name, m in training.token_row_modules(model).items()}
    untied = not model.config.tie_word_embeddings
    assert list(before) == ["model.embed_tokens"] + ["lm_head"] * untied and min(map(len, pieces)) > 1

    assert training.add_special_tokens(model, tok) == len(T.SPECIAL_TOKENS)
    ids = training.special_token_ids(tok)
    assert ids == list(range(n_tokens, n_tokens + len(ids)))
    assert model.get_input_embeddings().num_embeddings == max(rows, len(tok))  # padded: the new ids fit, no resize
    untouched = torch.ones(rows, dtype=torch.bool)
    untouched[[i for i in ids if i < rows]] = False
    for name, module in training.token_row_modules(model).items():
        weight = module.weight.detach()
        for i, piece_ids in zip(ids, pieces):
            torch.testing.assert_close(weight[i], before[name][piece_ids].mean(0))
        assert torch.equal(weight[:rows][untouched], before[name][untouched])  # old tokens and spare rows unchanged
        cosine = F.cosine_similarity(weight[ids, None], weight[None, ids], dim=-1)
        assert cosine[~torch.eye(len(ids), dtype=torch.bool)].max() < 0.9  # apart (one shared mean: ~1.0)
    head, embeddings = model.get_output_embeddings().weight[ids], model.get_input_embeddings().weight[ids]
    assert torch.equal(head, embeddings) != untied  # tied: the head follows; untied: its own pieces' mean
    snapshot = special_rows(model, tok)
    assert training.add_special_tokens(model, tok) == 0  # a second call adds and changes nothing
    assert all(torch.equal(snapshot[k], v) for k, v in special_rows(model, tok).items())


# ----------------------------------------------------------------------------------------------- training
def short_rows() -> list[dict]:
    rows = []
    for q, answer in [("Who wrote Hamlet?", "William Shakespeare"), ("Capital of France?", "Paris, on the Seine"),
                      ("Tallest mountain?", "Mount Everest")]:
        rows.append({"id": q, "type": T.GENERATOR_NO_FACTS, "instruction": q + T.EOI + "\n\n" + T.GENERATOR,
                     "input": "", "output": T.render_answer(answer, [])})
    return rows


KNOWLEDGE = [  # question, search queries, the passage that answers it, answer
    ("Who wrote Hamlet?", ["who wrote hamlet", "hamlet author"], PASSAGES[0], "William Shakespeare"),
    ("What is the capital of France?", ["capital of france"], PASSAGES[1], "Paris"),
    ("What is the tallest mountain?", ["tallest mountain on earth", "highest peak"],
     T.Passage("Mount Everest", "Mount Everest is Earth's highest mountain above sea level."), "Mount Everest"),
    ("Who painted the Mona Lisa?", ["mona lisa painter"],
     T.Passage("Mona Lisa", "The Mona Lisa is a portrait painted by Leonardo da Vinci."), "Leonardo da Vinci"),
    ("Which ocean is the largest?", ["largest ocean", "biggest ocean by area"],
     T.Passage("Pacific Ocean", "The Pacific Ocean is the largest and deepest of Earth's oceans."), "The Pacific Ocean"),
    ("At what temperature does water boil?", ["boiling point of water"],
     T.Passage("Water", "Water boils at 100 degrees Celsius at sea level."), "100 degrees Celsius"),
]


def long_rows() -> list[dict]:
    """One long trajectory per KNOWLEDGE item: the answering passage and another item's, in alternating order."""
    rows = []
    for k, (question, queries, passage, answer) in enumerate(KNOWLEDGE):
        other = KNOWLEDGE[(k + 1) % len(KNOWLEDGE)][2]
        passages, relevant = ([passage, other], 1) if k % 2 == 0 else ([other, passage], 2)
        facts = sorted([T.Fact(relevant, True, passage.title, passage.text), T.Fact(3 - relevant, False)],
                       key=lambda f: f.index)
        trajectory = T.Trajectory(queries, passages, facts, answer, [relevant])
        rows.append({"id": question, "type": T.LONG, "instruction": question, "input": "",
                     "output": T.render_long(trajectory)})
    return rows


def train_args(tiny_llama_dir, train_file, out, **kw) -> training.TrainArgs:
    base = dict(train_file=str(train_file), output_dir=str(out), model_name_or_path=str(tiny_llama_dir),
                use_special_tokens=True, per_device_train_batch_size=3, learning_rate=3e-3, num_train_epochs=40,
                lr_scheduler_type="constant", seed=0)
    return training.TrainArgs(**{**base, **kw})


def log_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / training.LOG_FILE).read_text().splitlines()]


@pytest.mark.slow
def test_training_learns_trajectories_and_greedy_decoding_reproduces_them(tmp_path, tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = short_rows()
    out = training.train(train_args(tiny_llama_dir, write_jsonl(tmp_path / "t.jsonl", rows), tmp_path / "out",
                                    with_tracking=True))
    losses = [r["loss"] for r in log_rows(out)]
    assert len(losses) == 40 and losses[-1] < 0.2 * losses[0]
    assert list((out / "smart_finetune").glob("events.out.tfevents.*"))  # TensorBoard curves
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    for row in rows:
        ids = tokenizer(T.format_prompt(row["instruction"]), return_tensors="pt")["input_ids"]
        generated = model.generate(ids, max_new_tokens=40, do_sample=False)[0, ids.shape[1]:]
        assert tokenizer.decode(generated) == row["output"]  # the answer, then </eog> stops generation


@pytest.mark.parametrize("tiny_variant_dir", ["tied", "untied"], indirect=True)
def test_full_fine_tuning_trains_the_special_token_rows(tmp_path, tiny_variant_dir):
    from transformers import AutoModelForCausalLM

    out = training.train(train_args(tiny_variant_dir, write_jsonl(tmp_path / "t.jsonl", long_rows()[:2]), tmp_path / "out",
                                    per_device_train_batch_size=2, max_train_steps=2))
    start_model, tokenizer = training.load_model_and_tokenizer(str(tiny_variant_dir))
    start, trained = special_rows(start_model, tokenizer), special_rows(AutoModelForCausalLM.from_pretrained(out), tokenizer)
    untied = not start_model.config.tie_word_embeddings
    assert list(trained) == ["model.embed_tokens"] + ["lm_head"] * untied
    for name, rows in trained.items():
        changed = dict(zip(T.SPECIAL_TOKENS, (rows != start[name]).any(dim=1).tolist()))
        # </eog> ends each example: as an input it predicts nothing, so only a head (tied or not) moves its row
        idle = {T.EOG} if untied and name == "model.embed_tokens" else set()
        assert changed == {t: t not in idle for t in T.SPECIAL_TOKENS}


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one state per process, precision included: reset it before and after a run."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


@pytest.mark.parametrize("precision,dtype", [("no", torch.float32), ("bf16", torch.bfloat16)])
@pytest.mark.parametrize("use_lora", [True, False], ids=["lora", "full"])
@pytest.mark.usefixtures("fresh_accelerate_state")
def test_training_precision_autocasts_and_is_recorded(tmp_path, tiny_llama_dir, monkeypatch, precision, dtype, use_lora):
    """bf16 on CPU: float32 trained weights (a frozen LoRA base in bfloat16), matmuls in bfloat16 (autocast); the
    model/adapter records the precision and a full or merged model is saved in it."""
    from safetensors.torch import load_file

    seen, real_loss = set(), training.lm_loss

    def spying_loss(model, batch):
        hooks = [m.register_forward_hook(lambda m, args, out: seen.add((m.weight.dtype, out.dtype)))
                 for m in model.modules() if isinstance(m, torch.nn.Linear)]
        try:
            return real_loss(model, batch)
        finally:
            for hook in hooks:
                hook.remove()

    monkeypatch.setattr(training, "lm_loss", spying_loss)
    out = training.train(train_args(tiny_llama_dir, write_jsonl(tmp_path / "t.jsonl", short_rows()), tmp_path / "out",
                                    mixed_precision=precision, use_lora=use_lora, lora_rank=4, max_train_steps=1))
    frozen_base = {(dtype, dtype)} if use_lora else set()  # a frozen LoRA base is stored in the training precision
    assert seen == {(torch.float32, dtype)} | frozen_base  # trained linear layers: float32, output in that precision
    name = training.TRAINED_DTYPES[precision]
    if use_lora:
        assert training.read_adapter_record(out)["dtype"] == name
        training.merge_lora(str(tiny_llama_dir), str(out), str(tmp_path / "merged"))
        out = tmp_path / "merged"
    assert json.loads((out / "config.json").read_text())["dtype"] == name
    weights = load_file(out / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {dtype} and "lm_head.weight" not in weights  # tied: stored once


def assert_recorded(out: Path, base: Path, train_file: Path, key: str, value: bool, **train_kw) -> None:
    """One LoRA step on `train_file` records `key` = `value` in the adapter record and, through the merge (into
    `out`/merged), in config.json; a backend loading either reads the same value as its attribute `key`."""
    from smart.inference.backends import load_backend

    adapter = training.train(train_args(base, train_file, out / "adapter", use_lora=True, lora_rank=4,
                                        max_train_steps=1, **train_kw))
    assert training.read_adapter_record(adapter)[key] is value
    training.merge_lora(str(base), str(adapter), str(out / "merged"))
    assert json.loads((out / "merged" / "config.json").read_text())[key] is value
    for model, lora_path in ((out / "merged", None), (base, adapter)):
        with load_backend("hf", str(model), lora_path=lora_path and str(lora_path)) as backend:
            assert getattr(backend, key) is value


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_chat_prompt_training_is_recorded_through_the_merge_and_read_by_the_backend(tmp_path, tiny_llama_dir):
    """--chat_prompt: the masked prompt is the chat-rendered request (no second BOS), the adapter record and the
    merged model's config.json say so, and a backend loading either prompts the same way; without it, neither."""
    from transformers import AutoTokenizer

    from smart.inference.backends import load_backend

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    prompt = T.chat_prompt(tokenizer, T.format_prompt("Who wrote Hamlet?"))
    enc = training.encode(training.Example("1", prompt, "<|Generator|>:\nShakespeare</eog>", templated=True), tokenizer, 512)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert enc["input_ids"][:n_prompt] == tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert supervised_text(tokenizer, enc) == "<|Generator|>:\nShakespeare</eog>"
    rows = write_jsonl(tmp_path / "t.jsonl", short_rows())
    for chat in (True, False):
        assert_recorded(tmp_path / str(chat), tiny_llama_dir, rows, "chat_prompt", chat, chat_prompt=chat)
    # stage 2 without it on a stage-1 model trained with it: the record is the new training's, not the base's
    out = training.train(train_args(tmp_path / "True" / "merged", rows, tmp_path / "stage2", use_lora=True, lora_rank=4,
                                    max_train_steps=1))
    training.merge_lora(str(tmp_path / "True" / "merged"), str(out), str(tmp_path / "stage2_merged"))
    with load_backend("hf", str(tmp_path / "stage2_merged")) as backend:
        assert backend.chat_prompt is False


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_restated_request_training_is_masked_recorded_and_read_by_the_backend(tmp_path, tiny_llama_dir):
    """Training data whose retrieval blocks restate the request: the restatement is masked like the passages, the
    adapter record and the merged config.json say `restated_request`, and a backend loading either restates it."""
    from transformers import AutoTokenizer

    t = T.Trajectory(["hamlet author"], [T.Passage("Hamlet", "Hamlet is a tragedy by William Shakespeare.")],
                     [T.Fact(1, True, "Hamlet", "Hamlet is a tragedy by William Shakespeare.")], "William Shakespeare",
                     [1], request="Who wrote Hamlet?")
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    enc = training.encode(training.Example("1", T.format_prompt("Who wrote Hamlet?"), T.render_long(t)), tokenizer, 512)
    supervised = supervised_text(tokenizer, enc)
    assert "Request" not in supervised and "Who wrote" not in supervised
    assert supervised.count("tragedy") == 1 and "Generator" in supervised  # the fact is learned, the passage not
    for restated in (True, False):
        rows = [{"id": str(i), "instruction": "Who wrote Hamlet?" + T.EOI + "\n\n", "input": "",
                 "output": T.render_long(replace(t, request=t.request if restated else ""))} for i in range(2)]
        path = write_jsonl(tmp_path / f"long{restated}.jsonl", rows)
        assert training.restates_request(training.load_examples(path)) is restated
        assert_recorded(tmp_path / str(restated), tiny_llama_dir, path, "restated_request", restated)


def lora_losses(model_dir: Path, cast_inputs: bool, steps: int = 6
                ) -> tuple[list[float], set[torch.dtype]]:
    """Losses of `steps` bf16-autocast LoRA steps on a bf16 base (one fixed packed batch), and the dtypes the
    adapters' first matrices received."""
    torch.manual_seed(0)
    model, tokenizer = training.load_model_and_tokenizer(str(model_dir), use_special_tokens=False, dtype=torch.bfloat16,
                                                 attn_implementation=training.register_packed_attention())
    model = training.apply_lora(model, tokenizer, 4, 8, 0.0, "all-linear", False, cast_inputs).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    seen = set()
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.add(args[0].dtype))
             for name, m in model.named_modules() if name.endswith("lora_A.default")]
    features, _ = training.encode_all([training.Example(str(i), T.format_prompt(q), T.render_long(LONG))
                                       for i, q in enumerate(["Who wrote Hamlet?", "Hamlet's author?"])], tokenizer, 256)
    batch, losses = training.collate_packed(features), []
    for _ in range(steps):
        with torch.autocast("cpu", torch.bfloat16):
            loss, _ = training.lm_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    for hook in hooks:
        hook.remove()
    return losses, seen


def test_fast_lora_step_keeps_the_losses_of_the_pre_issue_step(tiny_llama_dir):
    """The quickstart's CPU step (adapters take the bf16 activations as they are) against the earlier one (peft casts
    each adapter's input to float32 and autocast casts it back): the same losses on a tiny run."""
    before, before_inputs = lora_losses(tiny_llama_dir, cast_inputs=True)
    after, after_inputs = lora_losses(tiny_llama_dir, cast_inputs=False)
    assert before_inputs == {torch.float32} and after_inputs == {torch.bfloat16}  # the copies are gone
    assert after[-1] < after[0] - 0.1  # it learns
    assert after == pytest.approx(before, rel=0.02)


@pytest.mark.slow
def test_short_lora_run_teaches_each_step_its_end_token(tmp_path, embedded_llm_dir):
    """Teacher-forced on its training trajectories, the model ends each agent's step with that step's token
    (`</eor>` after Search(...), `</eol>` after the locator lines, `</eog>` after the answer) and never ends early."""
    from peft import PeftModel

    rows = long_rows()
    out = training.train(train_args(embedded_llm_dir, write_jsonl(tmp_path / "t.jsonl", rows), tmp_path / "out",
                                    use_lora=True, lora_rank=16, lora_alpha=32, lora_dropout=0.0,
                                    per_device_train_batch_size=len(rows), max_train_steps=10))
    base, tokenizer = training.load_model_and_tokenizer(str(embedded_llm_dir))
    model = PeftModel.from_pretrained(base, out).eval()
    ends = tokenizer.convert_tokens_to_ids([T.EOR, T.EOL, T.EOG])
    for row in rows:
        enc = training.encode(training.Example(row["id"], T.format_prompt(row["instruction"]), row["output"]), tokenizer, 1024)
        with torch.no_grad():
            predicted = model(torch.tensor([enc["input_ids"]])).logits[0].argmax(-1).tolist()
        # (target, argmax of the position before it) for every supervised token
        pairs = [(label, predicted[i - 1]) for i, label in enumerate(enc["labels"]) if label != training.IGNORE_INDEX]
        assert [label for label, _ in pairs if label in ends] == ends
        assert [guess for label, guess in pairs if label in ends] == ends, row["id"]
        assert [guess for label, guess in pairs if label not in ends and guess in ends] == [], row["id"]


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tmp_path, tiny_llama_dir):
    from safetensors.torch import load_file

    data = write_jsonl(tmp_path / "t.jsonl", short_rows() * 3)  # 9 examples, batch 2 -> 5 micro-batches an epoch
    kw = dict(use_lora=True, lora_rank=4, lora_dropout=0.1, per_device_train_batch_size=2, gradient_accumulation_steps=2,
              num_train_epochs=3, lr_scheduler_type="linear", warmup_ratio=0.2, checkpointing_steps="4")
    full = training.train(train_args(tiny_llama_dir, data, tmp_path / "full", **kw))
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(full / "step_4", resumed_dir / "step_4")
    resumed = training.train(train_args(tiny_llama_dir, data, resumed_dir, resume_from_checkpoint="latest", **kw))
    expected, got = log_rows(full), log_rows(resumed)
    assert [r["step"] for r in expected] == list(range(1, 10)) and [r["step"] for r in got] == list(range(5, 10))
    for a, b in zip(expected[4:], got):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["learning_rate"] == pytest.approx(b["learning_rate"])
    a, b = load_file(full / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path, tiny_llama_dir):
    data = write_jsonl(tmp_path / "t.jsonl", short_rows() * 2)
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "multi_agent/finetune.py"),
         "--train_file", str(data), "--output_dir", str(out), "--model_name_or_path", str(tiny_llama_dir),
         "--use_special_tokens", "--use_lora", "--lora_rank", "4", "--per_device_train_batch_size", "2",
         "--max_train_steps", "3", "--learning_rate", "1e-3"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [r["step"] for r in log_rows(out)] == [1, 2, 3]
    assert (out / "adapter_model.safetensors").exists() and (out / "tokenizer.json").exists()


@pytest.mark.slow
def test_two_stage_scripts_on_cpu(tmp_path, tiny_llama_dir):
    """script_short_learning.sh then script_long_learning.sh (from stage 1's merged model), one step each."""
    data = write_jsonl(tmp_path / "t.jsonl", short_rows())
    env = {**os.environ, "NUM_GPUS": "0", "TRAIN_FILE": str(data), "TOTAL_BATCH_SIZE": "2", "BATCH_SIZE_PER_GPU": "2",
           "LORA_RANK": "4", "MAX_STEPS": "1", "MAX_SEQ_LENGTH": "256"}
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    for script, model, out in [("script_short_learning.sh", tiny_llama_dir, stage1),
                               ("script_long_learning.sh", stage1 / "merged", stage2)]:
        run = subprocess.run(["bash", str(REPO / script)], capture_output=True, text=True,
                             env={**env, "MODEL": str(model), "OUTPUT_DIR": str(out)})
        assert run.returncode == 0, run.stderr[-3000:]
        assert [r["step"] for r in log_rows(out)] == [1]
        assert (out / "merged" / "config.json").exists() and (out / "merged" / "tokenizer.json").exists()
    assert json.loads((stage2 / "adapter_config.json").read_text())["base_model_name_or_path"] == str(stage1 / "merged")
