"""The main job: every SMART stage, for real, on the embedded defaults, cached stage by stage.

Each stage is the very command a researcher would type (printed before it runs). A stage is skipped when its
command and the stages it depends on are unchanged since it last succeeded; a run killed anywhere restarts at the
stage it was in (the stages themselves resume where they can). Sizes come from environment variables, see
`scripts/quickstart.sh`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from smart import defaults
from smart.demo_data import DEV_TASKS
from smart.io import write_json

PY = sys.executable
BASELINES = ("no_retrieval", "vanilla_rag", "modular")


@dataclass
class Stage:
    name: str
    cmd: list[str]
    outputs: list[Path]
    after: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def plan(run: Path, data: Path) -> tuple[list[Stage], dict[str, str]]:
    """The stages, in order, and the settings they were built from (sizes read from the environment)."""
    quick = env("QUICK", "0") == "1"
    max_articles = int(env("MAX_ARTICLES", "2000" if quick else "0"))
    n_train = env("N_TRAIN", "64" if quick else "200")
    n_dev = env("N_DEV", "20" if quick else "50")
    epochs1 = env("STAGE1_EPOCHS", "1")
    epochs2 = env("STAGE2_EPOCHS", "1")
    max_steps = env("MAX_STEPS", "0")
    precision = env("PRECISION", "bf16" if defaults.cpu_supports_bf16() else "no")
    special_tokens = env("USE_SPECIAL_TOKENS", "0")  # measured: plain markers train better here
    eval_dtype = "bfloat16" if precision == "bf16" else "float32"
    backend = "hf" if env("NO_VLLM", "0") == "1" else env("BACKEND", "auto")
    passages, corpus, embeddings = defaults.passages_tsv(), defaults.corpus_json(), defaults.embeddings_dir()
    if max_articles:
        passages = data / f"psgs_w100_{max_articles}_articles.tsv"
        corpus = data / f"vital_articles_{max_articles}.json"
        embeddings = data / f"embeddings_{max_articles}_articles"
    demo = data / (f"demo_{n_train}_{n_dev}" + (f"_{max_articles}_articles" if max_articles else ""))
    dev_files = [str(demo / f"{task}_dev.jsonl") for task in DEV_TASKS]
    stage1, stage2 = run / "stage1", run / "stage2"
    llm = str(defaults.llm_dir())
    train_env = {"MODEL": llm, "NUM_EPOCHS": epochs1, "TOTAL_BATCH_SIZE": env("TOTAL_BATCH_SIZE", "4"),
                 "BATCH_SIZE_PER_GPU": env("BATCH_SIZE_PER_GPU", "4"), "LEARNING_RATE": env("LEARNING_RATE", "1e-3"),
                 "LR_SCHEDULER": env("LR_SCHEDULER", "constant" if quick else "linear"), "WARMUP_RATIO": "0.03",
                 "LORA_RANK": env("LORA_RANK", "16"), "LORA_ALPHA": env("LORA_ALPHA", "32"), "LORA_DROPOUT": env("LORA_DROPOUT", "0"),
                 "MAX_SEQ_LENGTH": "1024", "MAX_STEPS": max_steps, "PRECISION": precision,
                 "USE_SPECIAL_TOKENS": special_tokens}
    prepare = [PY, "scripts/prepare_embedded.py"]
    if max_articles:
        prepare += ["--max_articles", str(max_articles), "--subset_json", str(corpus), "--subset_tsv", str(passages)]
    evaluate = [PY, "eval/run_eval.py", "--task", *DEV_TASKS, "--input_file", *dev_files, "--backend", backend,
                "--ndocs", "3", "--max_new_tokens", env("MAX_NEW_TOKENS", "48"), "--max_locator_tokens", "160",
                "--output_dir", str(run / "eval"), "--results_table", str(run / "eval" / "results.md")]
    stages = [
        Stage("prepare", prepare, [passages, defaults.llm_dir() / "config.json"]),
        Stage("embed", [PY, "multi_agent/generate_passage_embeddings.py", "--model_name_or_path", "embedded",
                        "--passages", str(passages), "--output_dir", str(embeddings)], [embeddings], ["prepare"]),
        Stage("retrieve_samples", [PY, "multi_agent/passage_retrieval.py", "--model_name_or_path", "embedded",
                                   "--passages", str(passages), "--passages_embeddings", f"{embeddings}/*",
                                   "--data", "scripts/sample_questions.jsonl", "--output_dir", str(run / "retrieval"),
                                   "--n_docs", "3"], [run / "retrieval" / "sample_questions.jsonl"], ["embed"]),
        Stage("demo_data", [PY, "data_creation/build_demo_data.py", "--corpus_json", str(corpus),
                            "--passages", str(passages), "--passages_embeddings", f"{embeddings}/*", "--output_dir", str(demo),
                            "--n_train", n_train, "--n_dev", n_dev], [Path(f) for f in dev_files], ["embed"]),
        Stage("stage1", ["bash", "script_short_learning.sh"], [stage1 / "merged" / "config.json"], ["demo_data"],
              {**train_env, "TRAIN_FILE": str(demo / "train_short.jsonl"), "OUTPUT_DIR": str(stage1 / "adapter"),
               "MERGED_DIR": str(stage1 / "merged")}),
        Stage("stage2", ["bash", "script_long_learning.sh"], [stage2 / "merged" / "config.json"], ["stage1"],
              {**train_env, "NUM_EPOCHS": epochs2, "MODEL": str(stage1 / "merged"), "TRAIN_FILE": str(demo / "train_long.jsonl"),
               "BATCH_SIZE_PER_GPU": env("STAGE2_BATCH_SIZE", "2"), "TOTAL_BATCH_SIZE": env("STAGE2_BATCH_SIZE", "2"),
               "OUTPUT_DIR": str(stage2 / "adapter"), "MERGED_DIR": str(stage2 / "merged")}),
        Stage("eval_smart", [*evaluate, "--model_name", str(stage2 / "merged"), "--method", "smart"],
              [run / "eval" / f"{task}_smart.metrics.json" for task in DEV_TASKS], ["stage2"]),
        Stage("eval_baselines", [*evaluate, "--model_name", llm, "--dtype", eval_dtype, "--method", *BASELINES],
              [run / "eval" / f"{task}_{m}.metrics.json" for task in DEV_TASKS for m in BASELINES], ["demo_data"]),
    ]
    stages.append(Stage("report", [PY, "scripts/make_report.py", "--run_dir", str(run)], [run / "report.md"],
                        ["eval_smart", "eval_baselines"]))
    settings = {"backbone": "SmolLM2-135M-Instruct (embedded)", "encoder": "all-MiniLM-L6-v2 (embedded)",
                "corpus": str(passages), "demo data": str(demo), "N_TRAIN": n_train, "N_DEV (per task)": n_dev,
                "STAGE1_EPOCHS": epochs1, "STAGE2_EPOCHS": epochs2, "MAX_STEPS": max_steps,
                "training precision": precision, "baselines' dtype": eval_dtype, "backend": backend,
                "special tokens": "added" if special_tokens == "1" else "plain-text markers",
                "ndocs": "3", "decoding": "greedy"}
    return stages, settings


def stage_key(stage: Stage, keys: dict[str, str]) -> str:
    blob = json.dumps([stage.cmd, sorted(stage.env.items()), [keys[a] for a in stage.after]])
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def main() -> None:
    run = Path(env("RUN_DIR", "runs/quickstart"))
    data = defaults.data_dir()
    stages, settings = plan(run, data)
    state_dir = run / "stages"
    state_dir.mkdir(parents=True, exist_ok=True)
    write_json(run / "settings.json", settings)
    keys: dict[str, str] = {}
    total = time.time()
    for i, stage in enumerate(stages, start=1):
        keys[stage.name] = key = stage_key(stage, keys)
        state_file = state_dir / f"{stage.name}.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        if state.get("key") == key and all(p.exists() for p in stage.outputs):
            print(f"[{i}/{len(stages)}] {stage.name}: cached ({state['seconds']:.0f} s when run)", flush=True)
            continue
        shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in stage.env.items())
        print(f"\n[{i}/{len(stages)}] {stage.name}: {shown} {shlex.join(stage.cmd)}", flush=True)
        start = time.time()
        result = subprocess.run(stage.cmd, env={**os.environ, **stage.env})
        seconds = time.time() - start
        if result.returncode != 0:
            sys.exit(f"stage {stage.name} failed (exit {result.returncode}) after {seconds:.0f} s; rerun to resume it")
        missing = [str(p) for p in stage.outputs if not p.exists()]
        if missing:
            sys.exit(f"stage {stage.name} finished but did not write {missing}")
        write_json(state_file, {"key": key, "seconds": seconds, "cmd": stage.cmd, "env": stage.env})
        print(f"[{i}/{len(stages)}] {stage.name}: done in {seconds:.0f} s", flush=True)
    print(f"\nall stages done ({time.time() - total:.0f} s this run)\n")
    print((run / "results_table.md").read_text())


if __name__ == "__main__":
    main()
