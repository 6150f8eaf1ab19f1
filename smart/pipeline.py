"""Cached multi-stage jobs: the quickstart and the commands behind the paper's tables, as lists of shell commands.

Each stage is the very command a researcher would type (printed before it runs). A stage is skipped when its
command, its environment, the stages it depends on and the code (`code_digest`) are unchanged since it last
succeeded (state in `<run>/stages/<name>.json`); a run killed anywhere restarts at the stage it was in (the stages
themselves resume where they can), while a stage run under changed settings or code first removes the earlier
results it would otherwise resume from (`Stage.fresh`: an evaluation's predictions, the data-creation steps' work
files). Two scales build the same stages:
- demo (`demo_setup`): the embedded defaults; sizes from the quickstart's environment variables
  (`scripts/quickstart.sh` lists them); the data stages build the corpus, embeddings and demo trajectories first.
- paper (`paper_setup`): your base model, trajectory files and the paper's five evaluation files (`PAPER=1`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from smart import defaults
from smart.data.demo_data import DEV_TASKS, SPAN_FACTS_PER_ROUND
from smart.data.real_questions import DEFAULT_MIX
from smart.evaluation.tasks import PAPER_EVAL_FILES
from smart.inference.agents import INFERENCE_ABLATIONS
from smart.io import InputError, iter_jsonl, write_json

PY = sys.executable
BASELINES = ("no_retrieval", "vanilla_rag", "modular")
QUICKSTART_BASELINES = ("no_retrieval", "vanilla_rag")  # the modular agents stay in the paper tables (Table 2)
TRAINING_ABLATIONS = ("full", *INFERENCE_ABLATIONS)  # full, no_intent, no_locator, generator_only


@dataclass
class Stage:
    name: str
    cmd: list[str]
    outputs: list[Path]
    after: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    fresh: list[Path] = field(default_factory=list)  # files or folders removed before a run under new settings or
    # code (a resume keeps them)


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass
class Setup:
    """What every job of one scale is built from."""

    run: Path
    base_model: str  # training starts here
    baseline_model: str  # the baselines run it
    train_short: str
    train_long: str
    tasks: list[str]
    eval_files: list[str]
    train_env: dict[str, str]  # settings shared by every training run
    stage2_env: dict[str, str]  # stage 2's overrides (the demo's batch size)
    eval_args: list[str]  # run_eval.py flags shared by every evaluation
    baseline_args: list[str]  # extra flags of the baselines (their dtype)
    data_stages: list[Stage]  # the stages that build the data (demo), none at paper scale
    data_stage: str | None  # the last of them, which training and evaluation wait for
    settings: dict[str, str]
    ablation_samples: int = 0  # records of each training-ablation run (0 = all); the paper's Table 3 used 60k
    baselines: tuple[str, ...] = BASELINES  # the baselines of the quickstart and Table 2

    def evaluate(self, out_dir: Path, model: str, methods: list[str], extra: list[str] | None = None) -> list[str]:
        return [PY, "eval/run_eval.py", "--task", *self.tasks, "--input_file", *self.eval_files, *self.eval_args,
                "--output_dir", str(out_dir), "--results_table", str(out_dir / "results.md"),
                "--model_name", model, *(extra or []), "--method", *methods]

    def metrics(self, out_dir: Path, methods: list[str] | tuple[str, ...]) -> list[Path]:
        return [out_dir / f"{task}_{method}.metrics.json" for task in self.tasks for method in methods]

    def predictions(self, out_dir: Path, methods: list[str] | tuple[str, ...]) -> list[Path]:
        """Every file an evaluation writes (predictions, metrics, viewer page): run_eval.py resumes from the
        predictions, so a changed stage must start without them."""
        return [out_dir / f"{task}_{method}{suffix}" for task in self.tasks for method in methods
                for suffix in (".jsonl", ".metrics.json", ".html")]

    def evaluation(self, name: str, out_dir: Path, model: str, methods: list[str] | tuple[str, ...], after: list[str],
                   extra: list[str] | None = None) -> "Stage":
        """The stage evaluating `methods` of `model` into `out_dir`."""
        return Stage(name, self.evaluate(out_dir, model, list(methods), extra), self.metrics(out_dir, methods), after,
                     fresh=self.predictions(out_dir, methods))

    def after_data(self) -> list[str]:
        return [self.data_stage] if self.data_stage else []


def demo_setup(run: Path, data: Path) -> Setup:
    """The embedded defaults, sized by the quickstart's environment variables. DEMO_DATA=real (default): training
    items and dev sets from the shipped real questions, the training items through the data-creation pipeline
    (create_data.sh, answer-guided teacher); DEMO_DATA=templates: the template builder's items and dev sets."""
    quick = env("QUICK", "0") == "1"
    demo_data = env("DEMO_DATA", "real")
    if demo_data not in ("real", "templates"):
        raise InputError(f"DEMO_DATA={demo_data}: choose real or templates")
    templates = demo_data == "templates"
    max_articles = int(env("MAX_ARTICLES", "2000" if quick and templates else "0"))
    n_train = env("N_TRAIN", "64" if quick else "200")
    n_dev = env("N_DEV", ("20" if quick else "50") if templates else ("50" if quick else "200"))
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
    llm = str(defaults.llm_dir())
    train_env = {"MODEL": llm, "NUM_EPOCHS": epochs1, "TOTAL_BATCH_SIZE": env("TOTAL_BATCH_SIZE", "4"),
                 "BATCH_SIZE_PER_GPU": env("BATCH_SIZE_PER_GPU", "4"), "LEARNING_RATE": env("LEARNING_RATE", "1e-3"),
                 "LR_SCHEDULER": env("LR_SCHEDULER", "constant" if quick else "linear"), "WARMUP_RATIO": "0.03",
                 "LORA_RANK": env("LORA_RANK", "16"), "LORA_ALPHA": env("LORA_ALPHA", "32"), "LORA_DROPOUT": env("LORA_DROPOUT", "0"),
                 "MAX_SEQ_LENGTH": "1024", "MAX_STEPS": max_steps, "PRECISION": precision,
                 "USE_SPECIAL_TOKENS": special_tokens, "CHAT_PROMPT": env("CHAT_PROMPT", "0")}
    stage2_env = {"NUM_EPOCHS": epochs2, "BATCH_SIZE_PER_GPU": env("STAGE2_BATCH_SIZE", "2"),
                  "TOTAL_BATCH_SIZE": env("STAGE2_BATCH_SIZE", "2")}
    prepare = [PY, "scripts/prepare_embedded.py"]
    if max_articles:
        prepare += ["--max_articles", str(max_articles), "--subset_json", str(corpus), "--subset_tsv", str(passages)]
    index = ["--model_name_or_path", "embedded", "--passages", str(passages), "--passages_embeddings", f"{embeddings}/*"]
    data_stages = [
        Stage("prepare", prepare, [passages, defaults.llm_dir() / "config.json"]),
        Stage("embed", [PY, "multi_agent/generate_passage_embeddings.py", "--model_name_or_path", "embedded",
                        "--passages", str(passages), "--output_dir", str(embeddings)], [embeddings], ["prepare"]),
        Stage("retrieve_samples", [PY, "multi_agent/passage_retrieval.py", *index,
                                   "--data", "scripts/sample_questions.jsonl", "--output_dir", str(run / "retrieval"),
                                   "--n_docs", "3"], [run / "retrieval" / "sample_questions.jsonl"], ["embed"]),
    ]
    settings = {"backbone": "SmolLM2-135M-Instruct (embedded)", "encoder": "all-MiniLM-L6-v2 (embedded)",
                "corpus": str(passages), "N_TRAIN": n_train, "N_DEV (per task)": n_dev}
    if templates:
        span_facts = env("SPAN_FACTS", str(SPAN_FACTS_PER_ROUND))
        demo = data / (f"demo_{n_train}_{n_dev}" + (f"_{max_articles}_articles" if max_articles else "")
                       + f"_spans{span_facts}")
        dev_files = [str(demo / f"{task}_dev.jsonl") for task in DEV_TASKS]
        train_short, train_long = str(demo / "train_short.jsonl"), str(demo / "train_long.jsonl")
        data_stages.append(Stage("demo_data", [PY, "data_creation/build_demo_data.py", "--corpus_json", str(corpus),
                                               "--passages", str(passages), "--passages_embeddings", f"{embeddings}/*",
                                               "--output_dir", str(demo), "--n_train", n_train, "--n_dev", n_dev,
                                               "--span_facts", span_facts], [Path(f) for f in dev_files], ["embed"]))
        settings |= {"demo data": f"templates ({demo})", "span facts per 13 relations": span_facts}
    else:
        mix = env("MIX", ",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items()))
        model_answers = env("MODEL_ANSWERS", "1") == "1"  # the backbone writes the open answers (smart/data/answer.py)
        answers = {"ANSWER_TEACHER": "hf" if backend == "hf" else "vllm", "ANSWER_MODEL": llm} if model_answers else {}
        missed_facts = env("MISSED_FACTS", "0")  # 1: missed-fact records in the long file (smart/data/combine.py)
        restate = env("RESTATE_REQUEST", "0")  # 1: open questions restated after the passages (smart/trajectory.py)
        demo = data / f"real_{n_train}_{n_dev}_{mix.replace('=', '').replace(',', '_')}"
        dev_files = [str(demo / "dev" / f"{task}.jsonl") for task in DEV_TASKS]
        trajectories = demo / "trajectories"
        train_short, train_long = str(trajectories / "real_short.jsonl"), str(trajectories / "real_long.jsonl")
        data_stages += [
            Stage("real_questions", [PY, "data_creation/prepare_real_questions.py", "--output_dir", str(demo),
                                     "--n_train", n_train, "--n_dev", n_dev, "--mix", mix],
                  [demo / "train_questions.jsonl", *(demo / "dev_questions" / f"{t}.jsonl" for t in DEV_TASKS)]),
            Stage("retrieve_dev", [PY, "multi_agent/passage_retrieval.py", *index, "--data",
                                   str(demo / "dev_questions" / "*.jsonl"), "--output_dir", str(demo / "dev"),
                                   "--n_docs", "5"], [Path(f) for f in dev_files], ["embed", "real_questions"]),
            Stage("create_data", ["bash", "data_creation/create_data.sh", str(demo / "train_questions.jsonl"), "real",
                                  str(trajectories)], [Path(train_short), Path(train_long)],
                  ["retrieve_dev"],  # after the dev files too: training and evaluation wait for this last data stage
                  {"TEACHER": "answer", "PASSAGES": str(passages), "EMBEDDINGS": f"{embeddings}/*", "PYTHON": PY,
                   "TOKENIZER": llm, "N_DOCS": "3", "MISSED_FACTS": missed_facts,
                   "RESTATE_REQUEST": restate, **answers}, fresh=[trajectories / "work"]),  # its resumable steps
        ]
        open_answers = ("the backbone's (from the located facts, else the passages) where they hold the gold answer, "
                        "else the gold" if model_answers else "the gold answers")
        settings |= {"demo data": f"real questions through create_data.sh, answer-guided teacher ({demo})",
                     "training mix": mix, "open answers": open_answers,
                     "missed-fact records": "yes" if missed_facts == "1" else "no",
                     "request restated after the passages": "yes" if restate == "1" else "no"}
    settings |= {"STAGE1_EPOCHS": epochs1, "STAGE2_EPOCHS": epochs2, "MAX_STEPS": max_steps,
                 "training precision": precision, "baselines' dtype": eval_dtype, "backend": backend,
                 "special tokens": "added" if special_tokens == "1" else "plain-text markers",
                 "ndocs": "3", "decoding": "greedy"}
    eval_args = ["--backend", backend, "--ndocs", "3", "--max_new_tokens", env("MAX_NEW_TOKENS", "64"),
                 "--max_locator_tokens", env("MAX_LOCATOR_TOKENS", "160")]
    return Setup(run, llm, llm, train_short, train_long, list(DEV_TASKS), dev_files, train_env, stage2_env, eval_args,
                 ["--dtype", eval_dtype], data_stages, data_stages[-1].name, settings,
                 baselines=QUICKSTART_BASELINES)


def paper_setup(run: Path) -> Setup:
    """The paper's recipe: MODEL (Llama-2-7B), TRAIN_SHORT / TRAIN_LONG trajectory files, EVAL_DIR holding the
    paper's evaluation files (Self-RAG / ALCE releases, names in PAPER_EVAL_FILES; TASKS to choose among them).
    Training uses the stage scripts' paper defaults (LoRA, lr 2e-4, 2 epochs, total batch 128); the baselines run
    BASELINE_MODEL (default MODEL)."""
    model = env("MODEL", "meta-llama/Llama-2-7b-hf")
    eval_dir = Path(env("EVAL_DIR", "eval_data"))
    tasks = env("TASKS", " ".join(PAPER_EVAL_FILES)).split()
    unknown = [t for t in tasks if t not in PAPER_EVAL_FILES]
    if unknown:
        raise InputError(f"TASKS: unknown {unknown} (choose from {', '.join(PAPER_EVAL_FILES)})")
    files = [str(eval_dir / PAPER_EVAL_FILES[t]) for t in tasks]
    missing = [f for f in files if not Path(f).exists()]
    trajectories = [env("TRAIN_SHORT", "short_trajectory_data.jsonl"), env("TRAIN_LONG", "long_trajectory_data.jsonl")]
    missing += [f for f in trajectories if not Path(f).exists()]
    if missing:
        raise InputError(f"paper scale: not found: {', '.join(missing)} (set EVAL_DIR, TRAIN_SHORT, TRAIN_LONG)")
    samples = int(env("ABLATION_SAMPLES", "60000"))
    settings = {"backbone": model, "baselines' model": env("BASELINE_MODEL", model), "training data": ", ".join(trajectories), "evaluation files": str(eval_dir),
                "training": "stage scripts' paper defaults", "training-ablation records": str(samples or "all"),
                "ndocs": "3", "decoding": "greedy"}
    return Setup(run, model, env("BASELINE_MODEL", model), *trajectories, tasks, files, {"MODEL": model}, {}, ["--ndocs", "3"], [], [], None,
                 settings, ablation_samples=samples)


def training_stage(s: Setup, name: str, model: str, train_file: str, after: list[str], script: str = "long",
                   extra_env: dict[str, str] | None = None) -> Stage:
    out = s.run / name
    return Stage(name, ["bash", f"script_{script}_learning.sh"], [out / "merged" / "config.json"], after,
                 {**s.train_env, **(s.stage2_env if script == "long" else {}), "MODEL": model, "TRAIN_FILE": train_file,
                  "OUTPUT_DIR": str(out / "adapter"), "MERGED_DIR": str(out / "merged"), **(extra_env or {})})


def merged(s: Setup, name: str) -> str:
    return str(s.run / name / "merged")


def core_stages(s: Setup) -> list[Stage]:
    """Both training stages, SMART's evaluation and the baselines' (the quickstart's Table 2)."""
    eval_dir = s.run / "eval"
    return [
        training_stage(s, "stage1", s.base_model, s.train_short, s.after_data(), script="short"),
        training_stage(s, "stage2", merged(s, "stage1"), s.train_long, ["stage1"]),
        s.evaluation("eval_smart", eval_dir, merged(s, "stage2"), ["smart"], ["stage2"]),
        s.evaluation("eval_baselines", eval_dir, s.baseline_model, s.baselines, s.after_data(), s.baseline_args),
    ]


def contamination_stage(s: Setup) -> Stage:
    """Overlap of the training trajectories with each evaluation file (eval/check_contamination.py)."""
    out = s.run / "contamination.json"
    return Stage("contamination", [PY, "eval/check_contamination.py", "--train", s.train_short, s.train_long,
                                   "--eval_files", *s.eval_files, "--tasks", *s.tasks, "--json", str(out)],
                 [out], s.after_data())


def quickstart_stages(s: Setup) -> list[Stage]:
    report = Stage("report", [PY, "scripts/make_report.py", "--run_dir", str(s.run)], [s.run / "report.md"],
                   ["eval_smart", "eval_baselines", "contamination"])
    return s.data_stages + [contamination_stage(s)] + core_stages(s) + [report]


# ----------------------------------------------------------------------------------------------- paper tables
def long_only_stage(s: Setup) -> str:
    """Table 4's long-only run: Table 3's full training run, unless that one is capped to fewer records."""
    return "train_long_full" if not s.ablation_samples else "train_long_all"


def table_sources(s: Setup) -> dict[str, dict[str, tuple[Path, str]]]:
    """Where each row of ours comes from: (evaluation folder under the run, method); rows follow smart.evaluation.paper."""
    eval_dir, tables = s.run / "eval", s.run / "tables"
    return {
        "table2": {m: (eval_dir, m) for m in ("smart", *BASELINES)},
        "table3": {**{f"train_{a}": (tables / f"train_long_{a}", "smart" if a == "full" else f"smart_{a}")
                      for a in TRAINING_ABLATIONS},
                   "infer_full": (eval_dir, "smart"),
                   **{f"infer_{a}": (tables / "infer", m) for a, m in INFERENCE_ABLATIONS.items()}},
        "table4": {"vanilla": (eval_dir, "vanilla_rag"), "short": (tables / "short", "smart"),
                   "long": (tables / long_only_stage(s), "smart"), "short_long": (eval_dir, "smart")},
    }


def table_results(table: str, s: Setup, predictions: bool = False):
    """Our measured rows of a table: row -> task -> metrics JSON, for the evaluations done so far. With
    `predictions`, also row -> task -> the prediction rows beside each metrics JSON (`<task>_<method>.jsonl`, where
    it exists): returns (metrics, predictions)."""
    if table not in ("table2", "table3", "table4"):
        raise InputError(f"unknown table '{table}' (table2, table3 or table4)")
    ours: dict[str, dict[str, dict]] = {}
    rows: dict[str, dict[str, list[dict]]] = {}
    for row, (folder, method) in table_sources(s)[table].items():
        for task in s.tasks:
            path = folder / f"{task}_{method}.metrics.json"
            if path.exists():
                ours.setdefault(row, {})[task] = json.loads(path.read_text())
                jsonl = folder / f"{task}_{method}.jsonl"
                if predictions and jsonl.exists():
                    rows.setdefault(row, {})[task] = [r for _, r in iter_jsonl(jsonl, tolerate_truncated_tail=True)]
    return (ours, rows) if predictions else ours


def table_stages(table: str, s: Setup) -> list[Stage]:
    """Every stage the table's rows need (the core stages first; the cache shares them with the quickstart)."""
    tables = s.run / "tables"
    ablation_data = tables / "ablation_data"
    capped = {"MAX_TRAIN_SAMPLES": str(s.ablation_samples)} if s.ablation_samples else {}

    def trained_eval(name: str, train: Stage, method: str) -> list[Stage]:
        return [train, s.evaluation(f"eval_{name}", tables / name, merged(s, train.name), [method], [train.name])]

    extra: list[Stage] = []
    if table == "table3":  # the inference ablation first: it needs no training
        methods = list(INFERENCE_ABLATIONS.values())
        extra.append(s.evaluation("eval_inference_ablation", tables / "infer", merged(s, "stage2"), methods, ["stage2"]))
        extra.append(Stage("ablation_data", [PY, "data_creation/make_ablation_data.py", "--input_file", s.train_long,
                                             "--output_dir", str(ablation_data)],
                           [ablation_data / f"train_long_{a}.jsonl" for a in INFERENCE_ABLATIONS], s.after_data()))
        for a in TRAINING_ABLATIONS:
            data = s.train_long if a == "full" else str(ablation_data / f"train_long_{a}.jsonl")
            name = f"train_long_{a}"
            after = s.after_data() if a == "full" else ["ablation_data"]
            extra += trained_eval(name, training_stage(s, name, s.base_model, data, after, extra_env=capped),
                                  "smart" if a == "full" else f"smart_{a}")
    elif table == "table4":
        extra.append(s.evaluation("eval_short", tables / "short", merged(s, "stage1"), ["smart"], ["stage1"]))
        name = long_only_stage(s)
        extra += trained_eval(name, training_stage(s, name, s.base_model, s.train_long, s.after_data()), "smart")
    elif table == "table2" and (rest := [m for m in BASELINES if m not in s.baselines]):  # the quickstart's skipped
        extra.append(s.evaluation("eval_table2_baselines", s.run / "eval", s.baseline_model, rest, s.after_data(),
                                  s.baseline_args))
    elif table != "table2":
        raise InputError(f"unknown table '{table}' (table2, table3 or table4)")
    core = [st for st in core_stages(s) if table != "table3" or st.name != "eval_baselines"]
    return s.data_stages + [contamination_stage(s)] + core + extra


# ----------------------------------------------------------------------------------------------- hand-written
HANDWRITTEN_DIR = Path("eval/handwritten")  # questions written by hand over the embedded corpus, not by templates
HANDWRITTEN_BASELINES = ("no_retrieval", "vanilla_rag")


def handwritten_stages(s: Setup) -> list[Stage]:
    """The quickstart's SMART and baselines on the hand-written questions: top-3 passages retrieved for each (static,
    as for the dev sets), then evaluated with the dev sets' flags. Needs the demo scale's data stages."""
    if not s.data_stage:
        raise InputError("the hand-written questions are over the embedded corpus: run them at demo scale")
    data, out = s.run / "handwritten" / "data", s.run / "handwritten" / "eval"
    retrieve = next(st for st in s.data_stages if st.name == "retrieve_samples")
    flags = retrieve.cmd[retrieve.cmd.index("--model_name_or_path"):retrieve.cmd.index("--data")]
    files = [HANDWRITTEN_DIR / f"{task}.jsonl" for task in DEV_TASKS]
    hw = replace(s, eval_files=[str(data / f.name) for f in files])
    stages = core_stages(s)[:2] + [
        Stage("retrieve_handwritten", [PY, "multi_agent/passage_retrieval.py", *flags, "--data", f"{HANDWRITTEN_DIR}/*.jsonl",
                                       "--output_dir", str(data), "--n_docs", "3"],
              [data / f.name for f in files], ["embed"]),
        hw.evaluation("eval_handwritten_smart", out, merged(s, "stage2"), ["smart"], ["stage2", "retrieve_handwritten"]),
        hw.evaluation("eval_handwritten_baselines", out, s.baseline_model, HANDWRITTEN_BASELINES,
                      ["retrieve_handwritten"], s.baseline_args),
    ]
    return s.data_stages + stages


# ----------------------------------------------------------------------------------------------- running
CODE_DIRS = ("smart", "multi_agent", "data_creation", "eval", "scripts")  # with the top-level scripts
CODE_SUFFIXES = (".py", ".sh", ".jsonl")  # the code, and the questions shipped beside it


def code_digest(root: Path = defaults.REPO_ROOT) -> str:
    """A digest of what the stages run: the code and shipped questions under CODE_DIRS and the top-level scripts
    (not the tests, docs or benchmarks). Part of every stage's key, so a rerun after a code update runs again."""
    files = sorted(p for d in CODE_DIRS for p in (root / d).rglob("*")
                   if p.suffix in CODE_SUFFIXES and "__pycache__" not in p.parts and p.is_file())
    files += sorted(p for p in root.iterdir() if p.suffix in CODE_SUFFIXES and p.is_file())
    digest = hashlib.sha1()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def stage_key(stage: Stage, keys: dict[str, str], code: str = "") -> str:
    blob = json.dumps([stage.cmd, sorted(stage.env.items()), [keys[a] for a in stage.after], code])
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def run_stage(stage: Stage) -> int:
    """Run one stage's command in its own process group and return its exit code. When the pipeline stops first
    (Ctrl-C, SIGTERM), the stage's whole group (its workers too) is stopped with it, so nothing runs on orphaned."""
    process = subprocess.Popen(stage.cmd, env={**os.environ, **stage.env}, start_new_session=True)

    def stop(signum: int, _frame) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run_stages(stages: list[Stage], run: Path) -> float:
    """Run the stages in order, skipping cached ones; exits with a message when one fails. Returns seconds."""
    state_dir = run / "stages"
    state_dir.mkdir(parents=True, exist_ok=True)
    keys: dict[str, str] = {}
    code = code_digest()
    total = time.time()
    for i, stage in enumerate(stages, start=1):
        keys[stage.name] = key = stage_key(stage, keys, code)
        state_file = state_dir / f"{stage.name}.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        if state.get("key") == key and all(p.exists() for p in stage.outputs):
            print(f"[{i}/{len(stages)}] {stage.name}: cached ({state['seconds']:.0f} s when run)", flush=True)
            continue
        running = state_dir / f"{stage.name}.running"
        if (running.read_text() if running.exists() else None) != key:  # not a resume of these settings
            stale = [p for p in stage.fresh if p.exists()]
            for path in stale:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            if stale:
                print(f"[{i}/{len(stages)}] {stage.name}: settings or code changed, removed {len(stale)} earlier "
                      "results", flush=True)
            running.write_text(key)
        shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in stage.env.items())
        print(f"\n[{i}/{len(stages)}] {stage.name}: {shown} {shlex.join(stage.cmd)}", flush=True)
        start = time.time()
        returncode = run_stage(stage)
        seconds = time.time() - start
        if returncode != 0:
            sys.exit(f"stage {stage.name} failed (exit {returncode}) after {seconds:.0f} s; rerun to resume it")
        missing = [str(p) for p in stage.outputs if not p.exists()]
        if missing:
            sys.exit(f"stage {stage.name} finished but did not write {missing}")
        write_json(state_file, {"key": key, "seconds": seconds, "cmd": stage.cmd, "env": stage.env, "code": code})
        running.unlink()
        print(f"[{i}/{len(stages)}] {stage.name}: done in {seconds:.0f} s", flush=True)
    return time.time() - total
