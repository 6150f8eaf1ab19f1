"""Offline demo data from the embedded corpus: questions derived from the articles, run through the data-creation
steps (rule intent, the real retriever, the answer-matching locator, combine), plus a dev set in the eval format.

Question kinds (phrasings vary, so the request never equals its search query, which is the article title):
- describe (open QA): "What is X?" and variants -> the article's short description
- field (open QA): "Which field is X in?" and variants -> the article's topic
- cloze (open QA): the lead sentence with a name or year blanked -> the blanked words
- claim (fact verification): "X can be described as 'D'." -> true, or false with another article's description
- compare (multi-hop QA, two queries): "Do X and Y belong to the same field?" -> yes / no
Train and dev come from disjoint articles; dev holds the open-QA kinds (half cloze) as {id, question, answers, ctxs}.
"""
from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path

from smart import defaults
from smart.combine import combine, trajectory_stats
from smart.convert import FACT_VERIFICATION, FACT_VERIFICATION_INSTRUCTION, MULTI_HOP_QA, OPEN_QA
from smart.intent import run_intent
from smart.io import InputError, iter_jsonl, write_json, write_jsonl
from smart.locator import run_locate, sentences
from smart.trajectory import normalize_space

log = logging.getLogger(__name__)

DESCRIBE = ["What is {t}?", "Tell me in a few words what {t} is.", "Could you briefly describe {t}?",
            "{t}: what does that name refer to?", "I keep hearing about {t}. What is it?", "Give a one-line summary of {t}."]
FIELD = ["Which field of knowledge does {t} belong to?", "Under what broad topic would an encyclopedia file {t}?",
         "Is {t} mainly a subject of history, science, the arts or something else?", "What area is {t} part of?"]
CLOZE = ["Fill in the blank: {s}", "Complete the sentence: {s}", "What is missing in this sentence? {s}",
         "Which words go in the gap? {s}"]
COMPARE = ["Do {t} and {u} belong to the same field?", "Would {t} and {u} be filed under the same topic?",
           "Are {t} and {u} part of the same area of knowledge?"]
KINDS = ("describe", "field", "cloze", "claim", "compare")
DEV_KINDS = ("cloze", "field", "cloze", "describe")  # half cloze: answers found in passages, where RAG helps
BLANK = "____"
_NAME = re.compile(r"(?<!^)(?<![\w-])(?:[A-Z][\w'-]+(?:\s+(?:of|the|de|and)\s+[A-Z][\w'-]+|\s+[A-Z][\w'-]+)*|1\d{3}|20\d{2})\b")


def load_articles(path: str | Path | None = None) -> list[dict]:
    """Usable articles (description, topic, a 6-40 word lead sentence), sorted by title."""
    data = json.loads(Path(path or defaults.corpus_json()).read_text(encoding="utf-8"))
    articles = []
    for key in sorted(data):
        a = data[key]
        lead = (sentences(normalize_space(a.get("extract") or "")) or [""])[0]
        if a.get("description") and a.get("topic") and 6 <= len(lead.split()) <= 40:
            articles.append({"title": normalize_space(a.get("title") or key), "description": a["description"].strip(),
                             "topic": a["topic"].strip(), "lead": lead})
    return articles


def cloze(article: dict, rng: random.Random) -> tuple[str, str] | None:
    """(lead sentence with a name or year blanked, the blanked words), or None when there is nothing to blank."""
    title = article["title"].lower()  # blanks share no word with the title, which stays in the question
    spans = [m for m in _NAME.finditer(article["lead"])
             if not set(re.findall(r"\w+", m.group(0).lower())) & set(re.findall(r"\w+", title))]
    if not spans:
        return None
    m = rng.choice(spans)
    return article["lead"][:m.start()] + BLANK + article["lead"][m.end():], m.group(0)


def make_item(kind: str, article: dict, rng: random.Random, others: list[dict], number: int) -> dict | None:
    """One unified item with rule `queries`, gold `answers` (matched by the locator) and `evidence` (the lead)."""
    t = article["title"]
    item = {"id": f"demo_{kind}_{number}", "dataset_name": f"demo_{kind}", "task_type": OPEN_QA, "input": "",
            "queries": [t], "evidence": [article["lead"]]}
    if kind == "describe":
        description = article["description"][0].upper() + article["description"][1:]
        return {**item, "instruction": rng.choice(DESCRIBE).format(t=t), "output": description, "answers": [description]}
    if kind == "field":
        return {**item, "instruction": rng.choice(FIELD).format(t=t), "output": article["topic"], "answers": [article["topic"]]}
    if kind == "cloze":
        made = cloze(article, rng)
        if made is None:
            return None
        return {**item, "instruction": rng.choice(CLOZE).format(s=made[0]), "output": made[1], "answers": [made[1]]}
    other = rng.choice(others)
    if kind == "claim":
        true = rng.random() < 0.5 or other["description"] == article["description"]
        claim = f"{t} can be described as \"{(article if true else other)['description']}\"."
        return {**item, "task_type": FACT_VERIFICATION, "instruction": FACT_VERIFICATION_INSTRUCTION, "input": claim,
                "output": "true" if true else "false", "answers": []}
    same = other["topic"] == article["topic"]
    question = rng.choice(COMPARE).format(t=t, u=other["title"])
    return {**item, "task_type": MULTI_HOP_QA, "instruction": question, "output": "yes" if same else "no",
            "answers": [], "queries": [t, other["title"]], "evidence": [article["lead"], other["lead"]]}


def make_items(articles: list[dict], n: int, kinds: tuple[str, ...], rng: random.Random, prefix: str) -> list[dict]:
    """`n` items, one per article, kinds taken in turn (an article that cannot make its kind gets the next one)."""
    items = []
    for number, article in enumerate(articles):
        if len(items) == n:
            break
        others = [a for a in articles if a is not article]
        for shift in range(len(kinds)):
            item = make_item(kinds[(len(items) + shift) % len(kinds)], article, rng, others, number)
            if item is not None:
                items.append({**item, "id": f"{prefix}_{item['id']}"})
                break
    return items


def demo_retriever(corpus_json: str | Path | None, passages: str | None, passages_embeddings: str | None,
                   encoder: str | None, work: Path):
    """The dense retriever the demo uses: over `passages` (a TSV; with `passages_embeddings`, a glob of its shards),
    else over `corpus_json` split into passages under work/, else over the embedded corpus (cached embeddings)."""
    from smart.passages import vital_articles_to_tsv
    from smart.retriever import Retriever, ensure_embedded_index

    encoder = encoder or defaults.EMBEDDED
    if passages_embeddings:
        return Retriever.from_paths(encoder, passages or defaults.EMBEDDED, passages_embeddings)
    if passages in (None, "", defaults.EMBEDDED) and corpus_json is not None:
        passages = str(work / "passages.tsv")
        vital_articles_to_tsv(corpus_json, passages)
    if passages in (None, "", defaults.EMBEDDED):
        return ensure_embedded_index(encoder)
    return ensure_embedded_index(encoder, passages, output_dir=str(work / "embeddings"), progress=False)


def build_demo_data(output_dir: str | Path, n_train: int = 100, n_dev: int = 50, n_docs: int = 3, seed: int = 0,
                    corpus_json: str | Path | None = None, passages: str | None = None,
                    passages_embeddings: str | None = None, encoder: str | None = None, tokenizer=None) -> dict:
    """Write train_long.jsonl, train_short.jsonl, dev.jsonl and stats.json (+ the steps' files under work/).

    `corpus_json`: the articles (vital-articles JSON: title -> {title, extract, description, topic}; default the
    embedded one); only articles with passages in the retriever's TSV are asked about. `passages`,
    `passages_embeddings`, `encoder`: the retriever (see `demo_retriever`). Every step reruns from scratch (seconds
    once the corpus embeddings exist).
    """
    out, work = Path(output_dir), Path(output_dir) / "work"
    work.mkdir(parents=True, exist_ok=True)
    for step in ("intent", "located"):
        (work / f"{step}.jsonl").unlink(missing_ok=True)
    retriever = demo_retriever(corpus_json, passages, passages_embeddings, encoder, work)
    titles = {row["title"] for row in retriever.store}
    articles = [a for a in load_articles(corpus_json) if a["title"] in titles]
    if len(articles) < n_dev + 2:
        raise InputError(f"{corpus_json or defaults.corpus_json()}: {len(articles)} usable articles with passages, "
                         f"need more than --n_dev {n_dev} + 1")
    rng = random.Random(seed)
    rng.shuffle(articles)
    dev_articles, train_articles = articles[:n_dev], articles[n_dev:]
    train_items = make_items(train_articles, n_train, KINDS, rng, "train")
    dev_items = make_items(dev_articles, n_dev, DEV_KINDS, rng, "dev")
    write_jsonl(work / "items.jsonl", train_items)
    write_jsonl(work / "dev_items.jsonl", dev_items)

    run_intent(str(work / "items.jsonl"), str(work / "intent.jsonl"), teacher=None)
    intent = [row for _, row in iter_jsonl(work / "intent.jsonl")]
    ctxs = retriever.search_merged([row["queries"] for row in intent], n_docs)
    write_jsonl(work / "retrieved.jsonl", [{**row, "ctxs": c} for row, c in zip(intent, ctxs)])
    located = work / "located.jsonl"
    run_locate(str(work / "retrieved.jsonl"), str(located), teacher=None)
    items, longs, shorts, rejected = combine(list(iter_jsonl(located)))
    write_jsonl(out / "train_long.jsonl", longs)
    write_jsonl(out / "train_short.jsonl", shorts)

    dev_ctxs = retriever.search([d["instruction"] for d in dev_items], n_docs)
    dev = [{"id": d["id"], "question": d["instruction"], "answers": d["answers"], "ctxs": c}
           for d, c in zip(dev_items, dev_ctxs)]
    write_jsonl(out / "dev.jsonl", dev)
    stats = trajectory_stats(items, longs + shorts, tokenizer)
    stats.update(dev=len(dev), rejected={k: len(v) for k, v in rejected.items()})
    write_json(out / "stats.json", stats)
    log.info("demo data in %s: %d long, %d short, %d dev", out, len(longs), len(shorts), len(dev))
    return stats
