"""Embedding shards (resumable), the Retriever, and the two CLIs."""
from __future__ import annotations

import glob
import json
import runpy
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from smart.io import InputError
from smart.retrieval import encoder as encoder_module
from smart.retrieval.passages import PassageStore, write_tsv
from smart.retrieval.retriever import Retriever, TextOptions, embed_passages, shard_range

REPO = Path(__file__).resolve().parent.parent
GENERATE = REPO / "multi_agent" / "generate_passage_embeddings.py"
RETRIEVE = REPO / "multi_agent" / "passage_retrieval.py"


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory, encoder_dir):
    """A 2-layer, 32-wide random BERT with MiniLM's tokenizer: the real code path in milliseconds."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def subset_tsv(embedded_passages, path: Path, every: int, extra_titles: tuple[str, ...] = ()) -> Path:
    """Every `every`-th passage of the embedded corpus plus all passages of `extra_titles`, original ids kept."""
    store = PassageStore(embedded_passages)
    rows = [(p["id"], p["text"], p["title"]) for i, p in enumerate(store) if i % every == 0 or p["title"] in extra_titles]
    write_tsv(path, rows)
    return path


@pytest.fixture(scope="module")
def small_tsv(embedded_passages, tmp_path_factory):
    return subset_tsv(embedded_passages, tmp_path_factory.mktemp("corpus") / "small.tsv", every=60)


@pytest.fixture(scope="module")
def small_index(tiny_bert_dir, small_tsv, tmp_path_factory):
    out = tmp_path_factory.mktemp("emb")
    for shard in range(3):
        embed_passages(tiny_bert_dir, str(small_tsv), str(out), shard_id=shard, num_shards=3, progress=False)
    return out


@pytest.mark.slow
def test_question_retrieves_its_article_in_top3(embedded_passages, encoder_dir, tmp_path):
    tsv = subset_tsv(embedded_passages, tmp_path / "sub.tsv", every=40, extra_titles=("Photosynthesis",))
    shard = embed_passages(str(encoder_dir), str(tsv), str(tmp_path / "emb"), progress=False)
    retriever = Retriever.from_paths("embedded", str(tsv), str(shard))
    assert len(retriever.store) > 300
    hits = retriever.search(["How do plants turn sunlight into chemical energy?"], k=3)[0]
    assert "Photosynthesis" in [h["title"] for h in hits]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert set(hits[0]) == {"id", "title", "text", "score"}
    assert hits[0] == {**retriever.store.get(hits[0]["id"]), "score": hits[0]["score"]}


def test_shards_cover_every_passage_once(small_index, small_tsv):
    store = PassageStore(small_tsv)
    ids = np.concatenate([np.load(small_index / f"passages_{i:02d}.ids.npy") for i in range(3)])
    assert list(ids) == list(store.ids)
    assert shard_range(10, 2, 3) == (6, 10)
    with pytest.raises(InputError, match="--shard_id 3"):
        shard_range(10, 3, 3)


def test_retriever_matches_brute_force(small_index, small_tsv, tiny_bert_dir):
    retriever = Retriever.from_paths(tiny_bert_dir, str(small_tsv), str(small_index / "*"))
    store = PassageStore(small_tsv)
    passages = np.concatenate([np.load(small_index / f"passages_{i:02d}.npy") for i in range(3)])
    queries = ["capital of France", "the largest planet"]
    q = retriever.encoder.encode(queries)
    expected = np.argsort(-(q @ passages.T), axis=1)[:, :5]
    results = retriever.search(queries, 5)
    assert [[h["id"] for h in r] for r in results] == [[store.get_row(i)["id"] for i in row] for row in expected]


def test_search_merged_interleaves_without_duplicates(small_index, small_tsv, tiny_bert_dir):
    retriever = Retriever.from_paths(tiny_bert_dir, str(small_tsv), str(small_index / "*"))
    a, b = retriever.search(["volcano eruption", "roman emperor"], 4)
    merged = retriever.search_merged([["volcano eruption", "roman emperor"], ["volcano eruption"] * 2], 4)
    expected = []
    for pair in zip(a, b):
        for hit in pair:
            if hit["id"] not in [e["id"] for e in expected]:
                expected.append(hit)
    assert [h["id"] for h in merged[0]] == [h["id"] for h in expected]
    assert merged[1] == a


class Killed(Exception):
    pass


def test_embedding_resumes_after_a_kill(tiny_bert_dir, small_tsv, tmp_path, monkeypatch):
    tsv = tmp_path / "corpus.tsv"
    shutil.copy(small_tsv, tsv)
    calls = []
    real_encode = encoder_module.Encoder.encode

    def encode(self, texts, **kw):
        calls.append(len(texts))
        if len(calls) == 3 and kill:
            raise Killed
        return real_encode(self, texts, **kw)

    monkeypatch.setattr(encoder_module.Encoder, "encode", encode)
    kill = True
    with pytest.raises(Killed):
        embed_passages(tiny_bert_dir, str(tsv), str(tmp_path / "a"), chunk_size=50, progress=False)
    assert not (tmp_path / "a" / "passages_00.npy").exists()
    assert len(list((tmp_path / "a" / ".passages_00.partial").glob("chunk_*.npy"))) == 2
    kill, calls[:] = False, []
    resumed = embed_passages(tiny_bert_dir, str(tsv), str(tmp_path / "a"), chunk_size=50, progress=False)
    n = len(PassageStore(tsv))
    assert calls == [50] * (n // 50 - 2) + ([n % 50] if n % 50 else [])  # only the chunks not done before
    fresh = embed_passages(tiny_bert_dir, str(tsv), str(tmp_path / "b"), chunk_size=50, progress=False)
    np.testing.assert_allclose(np.load(resumed), np.load(fresh), atol=1e-6)
    assert not (tmp_path / "a" / ".passages_00.partial").exists()
    calls[:] = []
    embed_passages(tiny_bert_dir, str(tsv), str(tmp_path / "a"), chunk_size=50, progress=False)
    assert calls == []  # unchanged inputs: nothing recomputed
    tsv.write_bytes(tsv.read_bytes())
    embed_passages(tiny_bert_dir, str(tsv), str(tmp_path / "a"), chunk_size=50, progress=False)
    assert calls == []  # corpus rewritten with the same content: still nothing recomputed
    embed_passages(tiny_bert_dir, str(tsv), str(tmp_path / "a"), chunk_size=50, progress=False,
                   text=TextOptions(lowercase=True))
    assert len(calls) > 0  # changed options: recomputed


def test_concurrent_runs_embed_once(tiny_bert_dir, small_tsv, tmp_path, monkeypatch):
    calls = []
    real_encode = encoder_module.Encoder.encode
    monkeypatch.setattr(encoder_module.Encoder, "encode", lambda self, texts, **kw: calls.append(1) or real_encode(self, texts, **kw))
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: embed_passages(tiny_bert_dir, str(small_tsv), str(tmp_path), chunk_size=100,
                                                      progress=False), range(2)))
    assert outs[0] == outs[1] and len(calls) == -(-len(PassageStore(small_tsv)) // 100)  # each chunk once


def test_mismatched_embeddings_are_refused(small_index, small_tsv, tiny_bert_dir, encoder_dir, tmp_path):
    other = tmp_path / "other.tsv"
    write_tsv(other, [("1", "one", "One"), ("2", "two", "Two")])
    with pytest.raises(InputError, match="do not match the passages: .*unknown passage id"):
        Retriever.from_paths(tiny_bert_dir, str(other), str(small_index / "*"))
    with pytest.raises(InputError, match="encoder dimension 384 does not match the embeddings' 32"):
        Retriever.from_paths(str(encoder_dir), str(small_tsv), str(small_index / "*"))
    for copy in ("passages_00", "passages_00_again"):  # shard 00 twice
        shutil.copy(small_index / "passages_00.npy", tmp_path / f"{copy}.npy")
        shutil.copy(small_index / "passages_00.ids.npy", tmp_path / f"{copy}.ids.npy")
    with pytest.raises(InputError, match="more than once"):
        Retriever.from_paths(tiny_bert_dir, str(small_tsv), str(tmp_path / "passages_*"))


def run_cli(script: Path, argv: list[str], capsys) -> tuple[int, str]:
    main = runpy.run_path(str(script), run_name="cli")["main"]
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("script, flags", [
    (GENERATE, ["--model_name_or_path", "--passages", "--output_dir", "--shard_id", "--num_shards", "--no_title"]),
    (RETRIEVE, ["--passages_embeddings", "--data", "--n_docs", "--save_or_load_index", "--n_subquantizers", "--query_field",
                "--index_type", "--n_lists", "--n_probe", "--ef_search"]),
])
def test_cli_help(script, flags):
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert all(flag in result.stdout for flag in flags)


def test_cli_generate_then_retrieve(tiny_bert_dir, small_tsv, tmp_path, capsys):
    emb = tmp_path / "emb"
    for shard in ("0", "1"):
        code, err = run_cli(GENERATE, ["--model_name_or_path", tiny_bert_dir, "--passages", str(small_tsv),
                                       "--output_dir", str(emb), "--shard_id", shard, "--num_shards", "2"], capsys)
        assert code == 0, err
    assert sorted(Path(p).name for p in glob.glob(f"{emb}/*")) == ["passages_00.ids.npy", "passages_00.npy",
                                                     "passages_01.ids.npy", "passages_01.npy"]
    items = [{"id": "a", "instruction": "Who painted the Mona Lisa?"}, {"id": "b", "question": "What is DNA?"},
             {"id": "c", "queries": ["river delta", "mountain glacier"], "instruction": "ignored"}]
    data = tmp_path / "in.json"
    data.write_text(json.dumps(items))
    code, err = run_cli(RETRIEVE, ["--model_name_or_path", tiny_bert_dir, "--passages", str(small_tsv),
                                   "--passages_embeddings", f"{emb}/*", "--data", str(data),
                                   "--output_dir", str(tmp_path / "out"), "--n_docs", "3", "--save_or_load_index"], capsys)
    assert code == 0, err
    out = json.loads((tmp_path / "out" / "in.json").read_text())
    assert [{k: v for k, v in o.items() if k != "ctxs"} for o in out] == items
    assert [len(o["ctxs"]) for o in out[:2]] == [3, 3] and 3 <= len(out[2]["ctxs"]) <= 6
    assert all(set(c) == {"id", "title", "text", "score"} for o in out for c in o["ctxs"])
    assert (emb / "index.faiss").exists()
    code, err = run_cli(RETRIEVE, ["--model_name_or_path", tiny_bert_dir, "--passages", str(small_tsv),
                                   "--passages_embeddings", f"{emb}/*", "--data", str(data),
                                   "--output_dir", str(tmp_path / "named.jsonl"), "--n_docs", "3"], capsys)
    assert code == 0, err
    assert [json.loads(line)["ctxs"] for line in (tmp_path / "named.jsonl").read_text().splitlines()] == [o["ctxs"] for o in out]


def test_cli_index_options(small_index, small_tsv, tiny_bert_dir, tmp_path, capsys):
    emb = tmp_path / "emb"
    shutil.copytree(small_index, emb)
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"id": i, "question": q}) + "\n" for i, q in enumerate(["volcano", "roman emperor"])))
    base = ["--model_name_or_path", tiny_bert_dir, "--passages", str(small_tsv), "--passages_embeddings", f"{emb}/*",
            "--data", str(data), "--n_docs", "5"]

    def ctxs(name, *flags):
        code, err = run_cli(RETRIEVE, base + ["--output_dir", str(tmp_path / name), *flags], capsys)
        assert code == 0, err
        lines = (tmp_path / name / "in.jsonl").read_text().splitlines()
        return [[c["id"] for c in json.loads(line)["ctxs"]] for line in lines]

    flat = ctxs("flat")
    ivf = ["--index_type", "ivf_flat", "--n_lists", "5", "--save_or_load_index"]
    assert ctxs("every_list", *ivf, "--n_probe", "5") == flat  # every list probed: exact
    saved = (emb / "index.faiss").stat().st_mtime_ns
    assert json.loads((emb / "index_meta.json").read_text())["factory"] == "IVF5,Flat"
    assert ctxs("one_list", *ivf, "--n_probe", "1") != flat  # another n_probe: the saved index, searched otherwise
    assert (emb / "index.faiss").stat().st_mtime_ns == saved
    code, err = run_cli(RETRIEVE, base + ["--output_dir", str(tmp_path / "bad"), "--index_type", "flat", "--n_probe", "4"],
                        capsys)
    assert code == 2 and "--n_probe applies to --index_type ivf_flat" in err and "Traceback" not in err


@pytest.mark.parametrize("content, message", [
    ('{"id": 1, "input": "no query"}\n', "in.jsonl:1: no query field"),
    ('{"id": 1, "instruction": "ok"}\n{"id": 2, "queries": ["fine", ""]}\n', "in.jsonl:2 field 'queries'"),
    ('{"id": 1, "instruction": "ok"}\n{"id": 2,\n', "in.jsonl:2: invalid JSON"),
    ("", "file is empty"),
])
def test_cli_retrieve_bad_input(small_index, small_tsv, tiny_bert_dir, tmp_path, capsys, content, message):
    data = tmp_path / "in.jsonl"
    data.write_text(content)
    code, err = run_cli(RETRIEVE, ["--model_name_or_path", tiny_bert_dir, "--passages", str(small_tsv),
                                   "--passages_embeddings", f"{small_index}/*", "--data", str(data),
                                   "--output_dir", str(tmp_path / "out")], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_bad_embeddings_and_passages(small_tsv, tiny_bert_dir, tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text('{"instruction": "q"}\n')
    base = ["--model_name_or_path", tiny_bert_dir, "--data", str(data), "--output_dir", str(tmp_path / "out")]
    code, err = run_cli(RETRIEVE, base + ["--passages", str(small_tsv), "--passages_embeddings", f"{tmp_path}/none_*"], capsys)
    assert code == 2 and "matches no embedding files" in err
    code, err = run_cli(RETRIEVE, base + ["--passages", str(small_tsv)], capsys)
    assert code == 2 and "--passages_embeddings" in err
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\ttext\ttitle\n1\tok\tT\n2\tbroken\n")
    code, err = run_cli(GENERATE, ["--model_name_or_path", tiny_bert_dir, "--passages", str(bad),
                                   "--output_dir", str(tmp_path / "emb")], capsys)
    assert code == 2 and f"{bad}:3: expected 3 tab-separated columns" in err
    assert not (tmp_path / "emb").exists()
