"""Long-short trajectory learning: loss-masked tokenization, padding-free packing, LoRA/full fine-tuning.

One training example = `trajectory.format_prompt(instruction, input)` (masked) + `output` (supervised), where every
token strictly inside a `<retrieval>...</retrieval>` block of the output is masked too: the model learns to open and
close the block, never to write passages (the system inserts them at inference).

Packing: the examples of a micro-batch are concatenated into one row with per-example `position_ids` and no
attention mask. By default training attends with `packed_sdpa` (causal sdpa per example, split at the position
resets); with `--use_flash_attn` flash-attention uses the resets as varlen boundaries; plain sdpa/eager get a
block-diagonal causal mask from transformers' mask builder. Either way examples never attend to each other and no
compute goes to padding (tests/test_training.py proves the equivalence).

Special tokens (`--use_special_tokens`): each new token's rows start at the mean of its sub-word pieces' rows and
train (LoRA: as peft trainable tokens, the untied output head's rows too). Precision (`--bf16`): float32 weights
(a frozen LoRA base: bf16; the adapter stays float32) under bf16 autocast, on CPUs too; the model records it
(config.json `dtype`, an adapter's ADAPTER_RECORD), full and merged models are saved in it, and the backends'
`dtype="auto"` evaluates in it.

The loop runs as one CPU process or under `accelerate launch` (DDP, DeepSpeed ZeRO-2/3, FSDP; configs in
multi_agent/configs/). Checkpoints hold the accelerate state (model, optimizer, scheduler, RNG) plus a loadable
model or adapter and the tokenizer; resuming continues from the same optimizer step and data order.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from smart import defaults, trajectory
from smart.io import InputError, read_records, require, where, write_json

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
LOG_FILE = "training_log.jsonl"  # one JSON row per logging step: step, epoch, loss, learning_rate, ...
STATE_FILE = "trainer_state.json"  # in each checkpoint folder: the optimizer step it was taken at
ADAPTER_RECORD = "adapter_training.json"  # beside a LoRA adapter: the training dtype and embedding_rows
TRAINED_DTYPES = {"no": "float32", "bf16": "bfloat16", "fp16": "float16"}  # --mixed_precision -> the model's dtype


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Example:
    """One record, rendered: `prompt` is masked, `target` supervised (except retrieval bodies)."""

    id: str
    prompt: str
    target: str
    templated: bool = False  # the prompt is chat-rendered (trajectory.chat_prompt) and carries its own BOS


def retrieval_spans(text: str) -> list[tuple[int, int]]:
    """Character spans strictly between each `<retrieval>` and the NEXT `</retrieval>` (to the end if unclosed)."""
    spans, start = [], 0
    while (i := text.find(trajectory.RETRIEVAL_OPEN, start)) >= 0:
        body = i + len(trajectory.RETRIEVAL_OPEN)
        j = text.find(trajectory.RETRIEVAL_CLOSE, body)
        spans.append((body, len(text) if j < 0 else j))
        start = len(text) if j < 0 else j + len(trajectory.RETRIEVAL_CLOSE)
    return spans


def check_retrieval_tags(text: str) -> str | None:
    """None when `<retrieval>`/`</retrieval>` alternate open, close, open, close...; else what is wrong."""
    tags = re.findall(re.escape(trajectory.RETRIEVAL_OPEN) + "|" + re.escape(trajectory.RETRIEVAL_CLOSE), text)
    for k, tag in enumerate(tags):
        expected = trajectory.RETRIEVAL_OPEN if k % 2 == 0 else trajectory.RETRIEVAL_CLOSE
        if tag != expected:
            return f"unbalanced retrieval tags: {tag} where {expected} was expected (tag {k + 1})"
    if len(tags) % 2:
        return f"unbalanced retrieval tags: {trajectory.RETRIEVAL_OPEN} never closed"
    return None


def restates_request(examples: list[Example]) -> bool:
    """Whether the examples' retrieval blocks end with the request restated (`trajectory.REQUEST_HEAD`)."""
    return any(trajectory.REQUEST_HEAD in text[a:b] for e in examples for text in (e.prompt, e.target)
               for a, b in retrieval_spans(text))


def load_examples(path: str | os.PathLike, max_samples: int | None = None) -> list[Example]:
    """Read a trajectory file (JSONL or JSON list of {id?, dataset_name?, type?, instruction, input, output}).

    Malformed records are errors, not skips: a missing/mistyped field, an empty `output` or unbalanced
    retrieval tags in `output` raise InputError naming file, line and field.
    """
    examples = []
    for line, record in read_records(path):
        instruction = require(record, "instruction", path, line, str)
        input_ = record.get("input") or ""
        if not isinstance(input_, str):
            raise InputError(f"{where(path, line, 'input')}: expected str, got {type(input_).__name__}")
        output = require(record, "output", path, line, str)
        if not output.strip():
            raise InputError(f"{where(path, line, 'output')}: empty output")
        if problem := check_retrieval_tags(output):
            raise InputError(f"{where(path, line, 'output')}: {problem}")
        examples.append(Example(str(record.get("id", line)), trajectory.format_prompt(instruction, input_), output))
        if max_samples is not None and len(examples) >= max_samples:
            break
    return examples


def encode(example: Example, tokenizer, max_seq_length: int) -> dict[str, list[int]] | None:
    """Token ids and labels (IGNORE_INDEX = masked); None when no supervised token is left after truncation.

    Prompt and target are tokenized apart (as at inference, where the prompt is tokenized alone and the model
    continues it). A target token is masked when its characters overlap a retrieval body; truncation keeps the
    beginning, so a block cut open stays masked to the end.
    """
    prompt_ids = tokenizer(example.prompt, add_special_tokens=not example.templated)["input_ids"]
    target = tokenizer(example.target, add_special_tokens=False, return_offsets_mapping=True)
    spans = retrieval_spans(example.target)
    target_labels = [
        IGNORE_INDEX if any(a < end and b > start for start, end in spans) else token
        for token, (a, b) in zip(target["input_ids"], target["offset_mapping"])
    ]
    input_ids = (prompt_ids + target["input_ids"])[:max_seq_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + target_labels)[:max_seq_length]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": input_ids, "labels": labels}


def encode_all(examples: list[Example], tokenizer, max_seq_length: int) -> tuple[list[dict], int]:
    """Encode every example; returns the kept ones and how many were dropped for lack of a supervised token."""
    encoded = [encode(e, tokenizer, max_seq_length) for e in examples]
    kept = [e for e in encoded if e is not None]
    return kept, len(encoded) - len(kept)


def collate_packed(features: list[dict]) -> dict[str, torch.Tensor]:
    """Concatenate the examples into one row; position ids restart at 0 for each (no padding, no attention mask)."""
    ids = [t for f in features for t in f["input_ids"]]
    labels = []
    for f in features:  # the first token of an example is never a target of the previous one
        labels += [IGNORE_INDEX] + f["labels"][1:]
    positions = [p for f in features for p in range(len(f["input_ids"]))]
    return {
        "input_ids": torch.tensor([ids]),
        "labels": torch.tensor([labels]),
        "position_ids": torch.tensor([positions]),
    }


def collate_padded(features: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the examples to the longest one (the baseline that packing is measured against)."""
    length = max(len(f["input_ids"]) for f in features)

    def pad(values: list[int], fill: int) -> list[int]:
        return values + [fill] * (length - len(values))

    return {
        "input_ids": torch.tensor([pad(f["input_ids"], pad_token_id) for f in features]),
        "labels": torch.tensor([pad(f["labels"], IGNORE_INDEX) for f in features]),
        "attention_mask": torch.tensor([pad([1] * len(f["input_ids"]), 0) for f in features]),
    }


PACKED_SDPA = "packed_sdpa"


def packed_sdpa_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    """sdpa run per example of a packed row (causal within each span whose position ids restart at 0), instead of
    once over the whole row under a block-diagonal mask: no compute goes to the masked blocks between examples
    (2.1x faster forward+backward for four 225-token examples on CPU, measured). Anything else (padded rows,
    decoding with a cache): plain sdpa with the mask."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.pop("position_ids", None)
    one_row = position_ids is not None and query.shape[0] == 1 and query.shape[2] == key.shape[2]
    starts = (position_ids[0] == 0).nonzero().flatten().tolist() if one_row else []
    if not starts or starts[0] != 0:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    parts = [sdpa_attention_forward(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None, is_causal=True,
                                    **kwargs)[0] for a, b in zip(starts, starts[1:] + [query.shape[2]])]
    return torch.cat(parts, dim=1), None


def register_packed_attention() -> str:
    """Make `attn_implementation="packed_sdpa"` known to transformers (its mask is sdpa's); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
    AttentionMaskInterface.register(PACKED_SDPA, sdpa_mask)
    return PACKED_SDPA


def lm_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over supervised tokens, and their count.

    The LM head runs only on positions that predict a supervised token (`logits_to_keep`), so the
    [tokens x vocabulary] logits of masked positions (prompts, passages) are never computed.
    """
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
    targets = targets[:, keep]
    n = int((targets != IGNORE_INDEX).sum())
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    return loss / max(n, 1), n


# ----------------------------------------------------------------------------------------------- model
def special_token_ids(tokenizer) -> list[int]:
    return tokenizer.convert_tokens_to_ids(trajectory.SPECIAL_TOKENS)


def token_row_modules(model) -> dict[str, torch.nn.Module]:
    """The modules with one row per token, by name: the input embeddings, and the output head unless tied to them."""
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    wanted = [embeddings] + ([head] if head is not None and head.weight is not embeddings.weight else [])
    return {name: module for name, module in model.named_modules() if any(module is w for w in wanted)}


def add_special_tokens(model, tokenizer) -> int:
    """Add trajectory.SPECIAL_TOKENS (kept single tokens); returns how many were new.

    Each new token's rows (input embedding; output head too when untied) start at the mean of the rows of the
    pieces the tokenizer split its text into before, so the new tokens start apart, each near its spelling.
    The embeddings grow only when a new id lies past the last row (a padded vocabulary may have room already).
    """
    from peft.utils.integrations import gather_params_ctx

    vocab = tokenizer.get_vocab()
    pieces = {t: tokenizer(t, add_special_tokens=False)["input_ids"] for t in trajectory.SPECIAL_TOKENS if t not in vocab}
    added = tokenizer.add_special_tokens(
        {"additional_special_tokens": trajectory.SPECIAL_TOKENS}, replace_extra_special_tokens=False
    )
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    for module in token_row_modules(model).values():
        with gather_params_ctx(module.weight), torch.no_grad():  # ZeRO-3: whole rows, rank 0's values kept
            for token, ids in pieces.items():
                module.weight[tokenizer.convert_tokens_to_ids(token)] = module.weight[ids].float().mean(0)
    return added


def set_stop_token(model, tokenizer) -> None:
    """Make `</eog>` (when the tokenizer has it) an end-of-sequence id of the model's generation config."""
    eog = tokenizer.convert_tokens_to_ids(trajectory.EOG)
    if eog is None or eog == tokenizer.unk_token_id:
        return
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if eog not in eos:
        model.generation_config.eos_token_id = eos + [eog]


def load_model_and_tokenizer(model_name_or_path: str, tokenizer_name: str | None = None,
                             use_special_tokens: bool = True, dtype: torch.dtype = torch.float32,
                             attn_implementation: str | None = None):
    """Model + tokenizer, with the trajectory special tokens added and `</eog>` as a stop token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = defaults.resolve_llm(model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name or path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation)
    if use_special_tokens:
        added = add_special_tokens(model, tokenizer)
        log.info("special tokens: %d added, vocabulary %d", added, len(tokenizer))
    set_stop_token(model, tokenizer)
    return model, tokenizer


def apply_lora(model, tokenizer, rank: int, alpha: float, dropout: float, target_modules: str | list[str],
               train_special_tokens: bool, cast_inputs: bool = True):
    """Wrap in a peft LoRA model; the special tokens' rows (input embeddings, and the output head when it is not
    tied to them) train and save with the adapter, and merge_and_unload writes them into the weights.

    `cast_inputs=False` (training under autocast): each adapter takes the layer's 16-bit input as it is. peft would
    cast it to the float32 adapter's dtype, and autocast cast it back for the matmul: the same numbers after two
    copies of every activation per adapted layer (pre-issue 34 behaviour: True)."""
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    ids = special_token_ids(tokenizer)
    token_rows = {"trainable_token_indices": {name: ids for name in token_row_modules(model)}} if train_special_tokens else {}
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=target_modules, **token_rows)
    model = get_peft_model(model, config)
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = cast_inputs
    model.print_trainable_parameters()
    return model


# ----------------------------------------------------------------------------------------------- training
@dataclass
class TrainArgs:
    """Every finetune.py flag (see its --help)."""

    train_file: str
    output_dir: str
    model_name_or_path: str = defaults.EMBEDDED
    tokenizer_name: str | None = None
    use_special_tokens: bool = False
    chat_prompt: bool = False  # the request in the chat template's user turn, the trajectory in the assistant's
    max_seq_length: int = 512
    max_train_samples: int | None = None
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    num_train_epochs: int = 3
    max_train_steps: int | None = None
    packing: bool = True
    use_lora: bool = False
    lora_rank: int = 64
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    lora_target_modules: str | list[str] = "all-linear"
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"  # no | bf16 | fp16
    attn_implementation: str | None = None
    seed: int = 42
    with_tracking: bool = False
    report_to: str = "tensorboard"
    logging_steps: int = 1
    checkpointing_steps: str | None = None  # an int (every N optimizer steps) or "epoch"
    resume_from_checkpoint: str | None = None  # a checkpoint folder, or "latest" (newest under output_dir)


def _checkpoints(output_dir: Path) -> list[Path]:
    return sorted((p for p in output_dir.glob("step_*") if (p / STATE_FILE).exists()),
                  key=lambda p: int(p.name.split("_")[1]))


def resolve_checkpoint(output_dir: str, resume: str | None) -> Path | None:
    if not resume:
        return None
    if resume == "latest":
        found = _checkpoints(Path(output_dir))
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).exists():
        raise InputError(f"{path}: not a checkpoint folder (no {STATE_FILE})")
    return path


def save_model(accelerator, model, tokenizer, out: Path, record: dict) -> None:
    """Save a loadable model (full fine-tuning) or adapter (LoRA) plus the tokenizer (ZeRO-3/FSDP safe).

    `record` = {"dtype": the training precision, "embedding_rows": the embedding rows trained}. A full model is
    saved in that dtype, which its config.json records. An adapter holds its LoRA weights and the trained
    special-token rows, not whole (resized) embedding matrices, with `record` beside it as ADAPTER_RECORD.
    """
    from peft import PeftModel

    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(model)
    if isinstance(unwrapped, PeftModel):
        unwrapped.save_pretrained(out, state_dict=state, safe_serialization=True, save_embedding_layers=False)
        write_json(out / ADAPTER_RECORD, record)
    else:
        state = cast_state(state, getattr(torch, record["dtype"]))
        unwrapped.save_pretrained(out, state_dict=state, safe_serialization=True)
        record_config(out, {k: v for k, v in record.items() if k in RECORDED_CONFIG})
    tokenizer.save_pretrained(out)


def cast_state(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """`state` with its floating-point tensors in `dtype`; tensors sharing storage (tied weights) stay shared,
    so save_pretrained still writes them once."""
    cast: dict[tuple, torch.Tensor] = {}
    for v in state.values():
        if v.is_floating_point() and (v.data_ptr(), v.shape) not in cast:
            cast[v.data_ptr(), v.shape] = v.to(dtype)
    return {k: cast[v.data_ptr(), v.shape] if v.is_floating_point() else v for k, v in state.items()}


# the prompt formats a model was trained on, and what a full or merged model's config.json records of its training
RECORDED_FLAGS = ("chat_prompt", "restated_request")
RECORDED_CONFIG = ("dtype", *RECORDED_FLAGS)


def record_config(model_dir: Path, fields: dict) -> None:
    """Set `fields` in a saved model's config.json (the training `dtype`: save_pretrained writes the parameters'
    own; `chat_prompt`: the model was trained on chat-rendered prompts; `restated_request`: on retrieval blocks that
    end with the request restated, see `restates_request`)."""
    path = model_dir / "config.json"
    write_json(path, {**json.loads(path.read_text()), **fields})


def read_adapter_record(lora_path: str | os.PathLike) -> dict:
    """The ADAPTER_RECORD beside an adapter ({} for adapters saved without one)."""
    path = Path(lora_path) / ADAPTER_RECORD
    return json.loads(path.read_text()) if path.exists() else {}


def train(args: TrainArgs) -> Path:
    """Fine-tune on a trajectory file; returns the output folder (final model/adapter + tokenizer)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from torch.utils.data import DataLoader
    from transformers import get_scheduler

    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=None if args.mixed_precision == "no" else args.mixed_precision,
        log_with=args.report_to if args.with_tracking else None,
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(args.seed)
    examples = load_examples(args.train_file, args.max_train_samples)
    trained_dtype = TRAINED_DTYPES[args.mixed_precision]
    if args.mixed_precision == "bf16" and accelerator.device.type == "cpu" and not defaults.cpu_supports_bf16():
        log.warning("bf16 on a CPU without bf16 matrix instructions is emulated: slower than float32")
    # float32 master weights (autocast computes in 16 bits), except a frozen LoRA base: stored in 16 bits (GPU
    # memory; on CPU autocast would otherwise re-cast every weight at every step: 1.15x faster measured)
    load_dtype = trained_dtype if args.use_lora else "float32"
    attn = args.attn_implementation or (register_packed_attention() if args.packing else None)
    model, tokenizer = load_model_and_tokenizer(args.model_name_or_path, args.tokenizer_name, args.use_special_tokens,
                                                getattr(torch, load_dtype), attn)
    if args.chat_prompt:
        if not getattr(tokenizer, "chat_template", None):
            raise InputError(f"--chat_prompt: {args.model_name_or_path} has no chat template")
        examples = [replace(e, prompt=trajectory.chat_prompt(tokenizer, e.prompt), templated=True) for e in examples]
    with accelerator.main_process_first():
        features, dropped = encode_all(examples, tokenizer, args.max_seq_length)
    if not features:
        raise InputError(f"{args.train_file}: no example has a supervised token within --max_seq_length {args.max_seq_length}")
    log.info("%d examples, %d dropped (no supervised token within %d tokens)", len(features), dropped, args.max_seq_length)
    # chat_prompt and restated_request always written: a model trained on a base that had them, without them, must
    # not inherit the base's
    record = {"dtype": trained_dtype, "embedding_rows": model.get_input_embeddings().num_embeddings,
              "chat_prompt": args.chat_prompt, "restated_request": restates_request(examples)}
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if args.use_lora:
        model = apply_lora(model, tokenizer, args.lora_rank, args.lora_alpha, args.lora_dropout,
                           args.lora_target_modules, args.use_special_tokens, cast_inputs=args.mixed_precision == "no")

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collate = collate_packed if args.packing else (lambda f: collate_padded(f, pad_id))
    # its own generator: starting an epoch must not draw from the global RNG (dropout), or a resumed run would drift
    dataloader = DataLoader(features, batch_size=args.per_device_train_batch_size, shuffle=True, collate_fn=collate,
                            generator=torch.Generator().manual_seed(args.seed))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_decay = [p for n, p in params if "bias" in n or "norm" in n.lower()]
    decay = [p for n, p in params if not ("bias" in n or "norm" in n.lower())]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # no empty group (LoRA trains no norm or bias): DeepSpeed's ZeRO optimizers drop it, and the scheduler, which
    # counts the groups it was given, then fails at its first step
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=args.learning_rate)

    steps_per_epoch = math.ceil(math.ceil(len(features) / args.per_device_train_batch_size / accelerator.num_processes)
                                / args.gradient_accumulation_steps)
    total_steps = args.max_train_steps or steps_per_epoch * args.num_train_epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    # the prepared scheduler steps once per process per optimizer step
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer,
                              num_warmup_steps=math.ceil(args.warmup_ratio * total_steps) * accelerator.num_processes,
                              num_training_steps=total_steps * accelerator.num_processes)
    model, optimizer, dataloader, scheduler = accelerator.prepare(model, optimizer, dataloader, scheduler)

    if args.with_tracking:
        accelerator.init_trackers("smart_finetune", config={k: v for k, v in asdict(args).items()
                                                             if isinstance(v, (int, float, str, bool))})
    completed = 0
    checkpoint = resolve_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        completed = json.loads((checkpoint / STATE_FILE).read_text())["step"]
        accelerator.print(f"resumed from {checkpoint} at step {completed}")
    log_path = output_dir / LOG_FILE
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        _truncate_log(log_path, completed)

    def checkpoint_now(step: int) -> None:
        folder = output_dir / f"step_{step}"
        accelerator.save_state(str(folder))
        save_model(accelerator, model, tokenizer, folder, record)
        if accelerator.is_main_process:
            (folder / STATE_FILE).write_text(json.dumps({"step": step}) + "\n")
        accelerator.wait_for_everyone()

    every = int(args.checkpointing_steps) if args.checkpointing_steps not in (None, "epoch") else None
    model.train()
    window_loss, window_steps, window_tokens, started = 0.0, 0, 0, time.time()
    run_started, run_first_step = started, completed
    first_epoch = completed // steps_per_epoch
    for epoch in range(first_epoch, epochs):
        dataloader.set_epoch(epoch)
        batches = dataloader
        if epoch == first_epoch and completed % steps_per_epoch:
            batches = accelerator.skip_first_batches(dataloader, (completed % steps_per_epoch) * args.gradient_accumulation_steps)
        step_loss, step_micro = 0.0, 0
        for batch in batches:
            with accelerator.accumulate(model):
                loss, n_tokens = lm_loss(model, batch)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            step_loss += loss.detach().float().item()
            step_micro += 1
            window_tokens += batch["input_ids"].numel()
            if not accelerator.sync_gradients:
                continue
            completed += 1
            window_loss += step_loss / step_micro
            window_steps += 1
            step_loss, step_micro = 0.0, 0
            if completed % args.logging_steps == 0 or completed == total_steps:
                mean = accelerator.reduce(torch.tensor(window_loss / window_steps, device=accelerator.device), "mean")
                tokens = int(accelerator.reduce(torch.tensor(window_tokens, device=accelerator.device), "sum"))
                row = {"step": completed, "epoch": round(completed / steps_per_epoch, 4), "loss": round(mean.item(), 6),
                       "learning_rate": scheduler.get_last_lr()[0],
                       "tokens_per_second": round(tokens / (time.time() - started), 1)}
                if args.with_tracking:
                    accelerator.log({k: v for k, v in row.items() if k != "step"}, step=completed)
                if accelerator.is_main_process:
                    with open(log_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(row) + "\n")
                    seconds_per_step = (time.time() - run_started) / (completed - run_first_step)
                    log.info("step %d/%d, eta %.0f s: %s", completed, total_steps,
                             seconds_per_step * (total_steps - completed), row)
                window_loss, window_steps, window_tokens, started = 0.0, 0, 0, time.time()
            if every and completed % every == 0:
                checkpoint_now(completed)
            if completed >= total_steps:
                break
        if args.checkpointing_steps == "epoch":
            checkpoint_now(completed)
        if completed >= total_steps:
            break

    accelerator.wait_for_everyone()
    save_model(accelerator, model, tokenizer, output_dir, record)
    if args.with_tracking:
        accelerator.end_training()
    accelerator.print(f"saved {'adapter' if args.use_lora else 'model'} and tokenizer to {output_dir}")
    return output_dir


def _truncate_log(path: Path, step: int) -> None:
    """Keep only log rows up to `step` (a resumed run re-logs the steps after it)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")


# ----------------------------------------------------------------------------------------------- merge
def merge_lora(base_model_path: str, lora_path: str, target_model_path: str, probe: str | None = None) -> float:
    """Merge a LoRA adapter into its base model and save model + tokenizer; returns the max logit difference.

    The base is resized to the embedding rows the adapter was trained with (its ADAPTER_RECORD; else its
    tokenizer's length); a base whose vocabulary is not the start of the adapter's is an error. The merged
    logits must equal the adapter's on a probe input before anything is saved; the merged model is saved in the
    dtype the adapter was trained in (ADAPTER_RECORD; float32 without one), which its config.json records.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_path = defaults.resolve_llm(base_model_path)
    if not (Path(lora_path) / "adapter_config.json").exists():
        raise InputError(f"{lora_path}: no adapter_config.json (not a LoRA adapter folder)")
    tokenizer = AutoTokenizer.from_pretrained(lora_path)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    record = read_adapter_record(lora_path)
    trained_rows = record.get("embedding_rows", len(tokenizer))
    check_vocabulary(base_path, base.get_input_embeddings().num_embeddings, trained_rows, tokenizer, lora_path)
    if trained_rows > base.get_input_embeddings().num_embeddings:
        base.resize_token_embeddings(trained_rows, mean_resizing=False)
    try:
        peft_model = PeftModel.from_pretrained(base, lora_path).eval()
    except RuntimeError as e:  # tensor shapes of another architecture
        raise InputError(f"{lora_path}: adapter does not fit the base model {base_model_path}: {e}") from None
    probe_ids = tokenizer(probe or (trajectory.format_prompt("Who wrote Hamlet?") + trajectory.RECONSTRUCTOR),
                          return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected = peft_model(probe_ids).logits
        merged = peft_model.merge_and_unload()
        diff = (merged(probe_ids).logits - expected).abs().max().item()
    if diff > 1e-3 * max(1.0, expected.abs().max().item()):
        raise RuntimeError(f"merged logits differ from the adapter's by {diff:.3g}: nothing saved")
    set_stop_token(merged, tokenizer)
    merged.to(getattr(torch, record.get("dtype", "float32")))
    tmp = Path(str(target_model_path).rstrip("/") + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    record_config(tmp, {key: bool(record.get(key)) for key in RECORDED_FLAGS})
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target_model_path, ignore_errors=True)
    tmp.rename(target_model_path)
    log.info("merged %s into %s (%s): max |logit difference| %.2e", lora_path, base_path, merged.dtype, diff)
    return diff


def check_vocabulary(base_path: str, base_rows: int, trained_rows: int, adapter_tokenizer, lora_path: str) -> None:
    """The base may not have more embedding rows than the adapter's model, and its tokens must keep their ids in
    the adapter's tokenizer (which may only add tokens after them)."""
    from transformers import AutoTokenizer

    problem = None
    if base_rows > trained_rows:
        problem = f"has {base_rows} embedding rows, the adapter's model {trained_rows}"
    else:
        try:
            base_vocab = AutoTokenizer.from_pretrained(base_path).get_vocab()
        except (OSError, ValueError):
            base_vocab = None  # no tokenizer beside the base weights: the row count is all there is to check
        if base_vocab is not None:
            adapter_vocab = adapter_tokenizer.get_vocab()
            moved = [t for t, i in base_vocab.items() if adapter_vocab.get(t) != i]
            if moved:
                problem = f"tokenizer differs from the adapter's ({len(moved)} tokens have other ids, e.g. {moved[0]!r})"
    if problem:
        raise InputError(f"base model {base_path} {problem}: not the model {lora_path} was trained on")
