"""Generation backends: stop-string cutting, batched HF generate, LoRA adapters, input checks, the OpenAI client
against local stub servers, and vLLM's greedy output against transformers' on the embedded SmolLM2."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from smart.inference.backends import HFBackend, cut_at_stop, load_backend, recorded_dtype, resolve_model
from smart.io import InputError, write_json
from smart.training import trainer as training

PROMPTS = ["<|Instruction|>:\nWho wrote Hamlet?</eoi>\n\n<|Reconstructor|>:\n", "The capital of France is",
           "One, two, three, four,"]


def test_cut_at_stop():
    assert cut_at_stop("abc</eor>def</eor>", ["</eor>"]) == ("abc</eor>", True)
    assert cut_at_stop("a</eol>b</eor>", ["</eor>", "</eol>"]) == ("a</eol>", True)
    assert cut_at_stop("no stop here", ["</eog>"]) == ("no stop here", False)
    assert cut_at_stop("x\ny", None) == ("x\ny", False)
    assert cut_at_stop("ab", ["b", "ab"]) == ("ab", True)  # the earliest match wins


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    backend = load_backend("hf", str(tiny_llama_dir), batch_size=2)
    yield backend
    backend.close()


def test_hf_batched_equals_one_by_one_and_stops(tiny):
    batched = tiny.generate(PROMPTS, 12)
    single = [tiny.generate([p], 12)[0] for p in PROMPTS]
    assert batched == single  # left padding and length sorting change nothing
    assert all(out for out in batched)
    assert tiny.stats["prompts"] == 2 * len(PROMPTS) and tiny.stats["generated_tokens"] > 0
    # a stop string taken from the free output: the continuation ends right after it
    text = batched[1]
    start = next(i for i in range(len(text) // 2, len(text)) if not text[i].isspace())
    stop = text[start:start + 2]
    cut = tiny.generate([PROMPTS[1]], 12, stop=[stop])[0]
    assert cut == text[:text.index(stop) + len(stop)], (text, stop, cut)


def test_hf_chat_and_max_new_tokens(tiny):
    replies = tiny.chat([[{"role": "user", "content": "Hello"}], [{"role": "user", "content": "Name a river."}]], 5)
    assert len(replies) == 2
    ids = tiny.tokenizer(replies[0], add_special_tokens=False)["input_ids"]
    assert 0 < len(ids) <= 6


def test_load_backend_input_errors(tmp_path, tiny_llama_dir):
    with pytest.raises(InputError, match="unknown backend"):
        load_backend("tgi", str(tiny_llama_dir))
    with pytest.raises(InputError, match="unknown dtype"):
        load_backend("hf", str(tiny_llama_dir), dtype="int3")
    with pytest.raises(InputError, match="not found"):
        load_backend("hf", str(tmp_path / "missing_model"))
    with pytest.raises(InputError, match="cannot load the model"):  # offline, not in the cache
        load_backend("hf", "no-such-org/no-such-model")
    no_tokenizer = tmp_path / "no_tok"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_text((tiny_llama_dir / "config.json").read_text())
    with pytest.raises(InputError, match="no tokenizer"):
        load_backend("hf", str(no_tokenizer))
    with pytest.raises(InputError, match="not a LoRA adapter"):
        resolve_model(str(tiny_llama_dir), str(tmp_path))


def test_lora_adapter_directly_and_with_lora_path(tmp_path, tiny_llama_dir, tiny):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    torch.manual_seed(1)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "o_proj"],
                                                 init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_llama_dir)
    assert resolve_model(str(adapter)) == (str(tiny_llama_dir), str(adapter))
    with load_backend("hf", str(adapter)) as from_adapter_dir:
        adapted = from_adapter_dir.generate(PROMPTS, 8)
    with load_backend("hf", str(tiny_llama_dir), lora_path=str(adapter)) as with_flag:
        assert with_flag.generate(PROMPTS, 8) == adapted
    assert adapted != tiny.generate(PROMPTS, 8)  # the (non-zero) adapter changes the model


# ----------------------------------------------------------------------------------------------- dtype
@pytest.fixture(scope="module")
def recorded_models(tmp_path_factory, tiny_llama_dir) -> dict:
    """The tiny Llama with config.json recording float32 (as saved), bfloat16, or no dtype at all."""
    models = {"float32": tiny_llama_dir}
    for recorded in ("bfloat16", None):
        folder = tmp_path_factory.mktemp(f"recorded_{recorded}")
        shutil.copytree(tiny_llama_dir, folder, dirs_exist_ok=True)
        config = {k: v for k, v in json.loads((folder / "config.json").read_text()).items() if k != "dtype"}
        write_json(folder / "config.json", {**config, "dtype": recorded} if recorded else config)
        models[recorded] = folder
    return models


def stub_vllm(monkeypatch) -> list[dict]:
    """Replace vllm.LLM by a stub that keeps its keyword arguments (no engine starts); returns them."""
    calls = []

    class LLM:
        def __init__(self, model: str, **kwargs):
            calls.append(kwargs)

        def get_tokenizer(self):
            return None

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM))
    return calls


# no record: each backend's own default; on a CPU float32 for transformers and bfloat16 for vLLM, on a GPU
# transformers' bfloat16 (float32 where the GPU lacks it) and vLLM's "auto"
ON_GPU = torch.cuda.is_available()
NO_RECORD = ("bfloat16" if ON_GPU and torch.cuda.is_bf16_supported() else "float32", "auto" if ON_GPU else "bfloat16")


@pytest.mark.parametrize("recorded,hf,vllm", [("float32", "float32", "float32"), ("bfloat16", "bfloat16", "bfloat16"),
                                             (None, *NO_RECORD)])
def test_auto_dtype_follows_the_recorded_training_precision(recorded_models, monkeypatch, recorded, hf, vllm):
    model = str(recorded_models[recorded])
    assert recorded_dtype(model) == recorded
    with load_backend("hf", model) as backend:
        assert backend.dtype == hf and backend.model.dtype == getattr(torch, hf)
    with load_backend("hf", model, dtype="float32") as backend:  # an explicit dtype wins
        assert backend.model.dtype == torch.float32
    engines = stub_vllm(monkeypatch)
    assert load_backend("vllm", model).dtype == vllm and engines[-1]["dtype"] == vllm
    assert load_backend("vllm", model, dtype="float32").dtype == "float32" and engines[-1]["dtype"] == "float32"


@pytest.mark.skipif(ON_GPU, reason="the KV cache is fixed on CPU only")
@pytest.mark.parametrize("memory_gib, asked, kv_gib", [(24, None, 4.0), (8, None, 2.0), (24, 1.5, 1.5)])
def test_vllm_cpu_kv_cache_holds_a_batch_within_a_quarter_of_the_memory(recorded_models, monkeypatch, memory_gib,
                                                                       asked, kv_gib):
    page = 4096
    monkeypatch.setattr(os, "sysconf", lambda name: {"SC_PAGE_SIZE": page, "SC_PHYS_PAGES": memory_gib * 2**30 // page}[name])
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "auto")  # keep the test's process environment as it was
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    engines = stub_vllm(monkeypatch)
    load_backend("vllm", str(recorded_models[None]), kv_cache_gb=asked)
    assert engines[-1]["kv_cache_memory_bytes"] == int(kv_gib * 2**30)


def test_embedded_backbone_records_no_dtype(embedded_llm_dir):
    """Dequantized 4-bit weights have no training precision: the backends' defaults apply."""
    assert recorded_dtype(str(embedded_llm_dir)) is None


def test_adapter_record_gives_the_dtype_and_vllm_refuses_trained_token_rows(tmp_path, recorded_models, monkeypatch):
    model, tokenizer = training.load_model_and_tokenizer(str(recorded_models["float32"]))
    adapter = tmp_path / "adapter"
    training.apply_lora(model, tokenizer, 4, 8, 0.0, "all-linear", True).save_pretrained(adapter, save_embedding_layers=False)
    tokenizer.save_pretrained(adapter)
    write_json(adapter / training.ADAPTER_RECORD, {"dtype": "bfloat16", "embedding_rows": len(tokenizer)})
    assert recorded_dtype(str(recorded_models["float32"]), str(adapter)) == "bfloat16"  # the adapter's, not the base's
    with load_backend("hf", str(adapter)) as backend:
        assert backend.dtype == "bfloat16" and backend.model.get_base_model().dtype == torch.bfloat16
    stub_vllm(monkeypatch)
    with pytest.raises(InputError, match="merge it"):
        load_backend("vllm", str(adapter))


# ----------------------------------------------------------------------------------------------- openai
class _CompletionsStub(BaseHTTPRequestHandler):
    """/v1/completions: echoes 'done' and a stop string the way vLLM's server does (dropped, named in stop_reason)."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path.endswith("/completions") and request["temperature"] == 0.0
        prompts = request["prompt"] if isinstance(request["prompt"], list) else [request["prompt"]]
        choices = []
        for i, p in enumerate(prompts):
            natural_end = p.endswith("!")
            choices.append({"index": i, "text": f"done {i}", "finish_reason": "stop", "logprobs": None,
                            "stop_reason": None if natural_end else (request.get("stop") or [None])[0]})
        body = json.dumps({"id": "c", "object": "text_completion", "created": 0, "model": request["model"],
                           "choices": choices[::-1],  # out of order, as servers may send them
                           "usage": {"prompt_tokens": 1, "completion_tokens": 2 * len(prompts), "total_tokens": 3}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_openai_backend_completions_and_chat(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CompletionsStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        backend = load_backend("openai", "served-model", batch_size=2)
        out = backend.generate(["a", "b", "c!"], 16, stop=["</eor>"])
        assert out == ["done 0</eor>", "done 1</eor>", "done 0"]  # stop restored; a natural end gets none
        assert backend.stats["generated_tokens"] == 6 and backend.stats["prompts"] == 3
        backend.close()
    finally:
        server.shutdown()
        server.server_close()

    from openai_stub import StubOpenAI

    with StubOpenAI(respond=lambda messages: "Paris</eog> and more") as stub:
        backend = load_backend("openai", "served-model", base_url=stub.url, api_key="k", batch_size=4)
        replies = backend.chat([[{"role": "user", "content": f"q{i}"}] for i in range(5)], 16, stop=["</eog>"])
        assert replies == ["Paris</eog>"] * 5 and stub.counts["requests"] == 5
        backend.close()


# ----------------------------------------------------------------------------------------------- vllm
VLLM_SCRIPT = textwrap.dedent("""
    import json, sys
    from smart.inference.backends import load_backend
    if __name__ == "__main__":
        prompts, n = json.loads(sys.argv[1]), int(sys.argv[2])
        backend = load_backend("vllm", sys.argv[3], max_model_len=1024, dtype="float32")
        out = {"free": backend.generate(prompts, n), "stopped": backend.generate(prompts, n, stop=["."]),
               "chat": backend.chat([[{"role": "user", "content": "What is the capital of France?"}]], n)}
        backend.close()
        print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def vllm_outputs(tmp_path_factory, embedded_llm_dir):
    """One vLLM start (a script file: vLLM's workers re-import __main__) for every vLLM check."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (pip install -r requirements-vllm.txt)")
    script = tmp_path_factory.mktemp("vllm") / "run_vllm.py"
    script.write_text(VLLM_SCRIPT)
    done = subprocess.run([sys.executable, str(script), json.dumps(PROMPTS), "16", str(embedded_llm_dir)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT", 1)[1])


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_greedy_matches_transformers(vllm_outputs, embedded_llm_dir):
    hf = HFBackend(str(embedded_llm_dir), dtype="float32", batch_size=4)
    free, stopped = hf.generate(PROMPTS, 16), hf.generate(PROMPTS, 16, stop=["."])
    chat = hf.chat([[{"role": "user", "content": "What is the capital of France?"}]], 16)
    hf.close()
    # both in float32 (in bfloat16 the 135M model answers otherwise): the first tokens must agree
    for a, b in zip(vllm_outputs["free"] + vllm_outputs["chat"], free + chat):
        assert a[:12] == b[:12], (a, b)
    for stopped_out, free_out in ((vllm_outputs["stopped"], vllm_outputs["free"]), (stopped, free)):
        assert stopped_out == [cut_at_stop(f, ["."])[0] for f in free_out]  # cut right after the first "."
    assert "Paris" in vllm_outputs["chat"][0]


@pytest.mark.parametrize("cores, preset, bound, in_process", [
    ({0, 1}, None, "0,1", "0"),              # 2 cores: vLLM would reserve one of them for its scheduler
    ({2, 3, 5, 7}, None, "2,3,5,7", "0"),    # the cores this process may run on, not 0..n-1
    (set(range(16)), None, None, None),      # a large machine keeps vLLM's own binding and processes
    ({0}, None, None, None),                 # one core: nothing to bind
    ({0, 1}, "nobind", "nobind", "0"),       # the user's binding wins
])
def test_vllm_cpu_runs_in_process_on_every_core_of_a_small_machine(monkeypatch, cores, preset, bound, in_process):
    from smart.inference.backends import setup_vllm_for_small_cpu

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores)
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    if preset is None:
        monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    else:
        monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", preset)
    setup_vllm_for_small_cpu()
    assert os.environ.get("VLLM_CPU_OMP_THREADS_BIND") == bound
    assert os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == in_process


def test_vllm_multiprocessing_chosen_by_the_user_is_kept(monkeypatch):
    from smart.inference.backends import setup_vllm_for_small_cpu

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    setup_vllm_for_small_cpu()
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"
