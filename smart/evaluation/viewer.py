"""The trajectory viewer: one static, self-contained HTML page of an evaluation run, built from its predictions.

The page needs no server and loads nothing from outside (a Content-Security-Policy admits only its own inline
style and script, by hash). It shows the run's metrics and settings (the `.metrics.json` beside the predictions,
and `settings.json` of a quickstart run folder), fallbacks and parser problems per agent, and one card per example:
the request, the reconstructed queries, each passage with the Fact Locator's verdict and the located fact marked in
the text, the answer with its citations linked to the passages, the gold answers and score, the problems and the
raw trajectory. Given a second run per file (`compare`), each card shows both runs side by side.

Passage texts: predictions keep only `{id, title}` per passage. The text comes from the trajectory (SMART's
`<retrieval>` block, vanilla RAG's `Passages:` block) or else from the eval input file named in the metrics
(`ctxs` matched by id and title); a passage found in neither is shown by its title alone.

Every text is HTML-escaped in Python; the script only filters and pages the cards, which sit inert in `<template>`
elements until shown (a page of PAGE_SIZE at a time, so 10k examples stay usable).

Screenshots: `screenshot` opens a page from disk in headless Chromium (Selenium and chromedriver; Debian's
`chromium` and `chromium-driver`), with a filter state given as the page's URL fragment, and saves what a window
shows as PNG (eval/view_run.py --screenshot; tests/test_viewer_browser.py drives the filters the same way).
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from smart import trajectory as tj
from smart.evaluation.metrics import normalize_answer
from smart.evaluation.tasks import TASKS, Example, load_examples
from smart.inference.agents import FALLBACKS, METHODS
from smart.io import InputError, atomic_write, iter_jsonl, require, where

PAGE_SIZE = 50
RESULTS = ("correct", "partial", "wrong", "unscored", "missing")
VANILLA_PASSAGES = "Passages:\n"  # how the vanilla RAG baseline's prompt starts (smart.inference.agents.run_vanilla_rag)


@dataclass
class Run:
    """One predictions file: validated rows, its metrics, and per row id the passage texts (None: not found)."""

    path: Path
    label: str
    dataset: str
    metrics: dict
    run_settings: dict
    rows: list[dict]
    texts: dict[str, list[str | None]]
    requests: dict[str, str]
    note: str


# ----------------------------------------------------------------------------------------------- reading
ROW_FIELDS = {"question": str, "answer": str, "trajectory": str, "queries": list, "passages": list, "facts": list,
              "citations": list, "fallbacks": list, "problems": list}
LIST_ITEMS = {"queries": str, "passages": dict, "facts": dict, "citations": int, "fallbacks": str, "problems": str}
FACT_FIELDS = {"index": int, "relevant": bool, "text": str}
OPTIONAL_FIELDS = {"score": (int, float), "golds": list}


def _expect(value: object, kind: type | tuple[type, ...], path: Path, line: int, field: str) -> None:
    """InputError naming file, line and field unless `value` is of `kind` (a bool counts as no number)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{where(path, line, field)}: expected {name}, got {type(value).__name__}")


def _check_row(row: dict, path: Path, line: int) -> dict:
    """The row with the fields the page reads checked (InputError naming file, line and field); `id` as a string."""
    row = {**row, "id": str(require(row, "id", path, line, (str, int)))}
    for name, kind in ROW_FIELDS.items():
        _expect(require(row, name, path, line), kind, path, line, name)
    for name, kind in LIST_ITEMS.items():
        for j, value in enumerate(row[name]):
            _expect(value, kind, path, line, f"{name}[{j}]")
    for j, passage in enumerate(row["passages"]):
        _expect(passage.get("title", ""), str, path, line, f"passages[{j}].title")
    for j, fact in enumerate(row["facts"]):
        for name, kind in FACT_FIELDS.items():
            _expect(fact.get(name), kind, path, line, f"facts[{j}].{name}")
    for name, kind in OPTIONAL_FIELDS.items():
        if row.get(name) is not None:
            _expect(row[name], kind, path, line, name)
    return row


def read_predictions(path: str | os.PathLike) -> list[dict]:
    """The rows of a predictions JSONL, checked (InputError naming file, line and field); a torn last line (a run
    still writing) is left out."""
    path = Path(path)
    rows, seen = [], {}
    for line, obj in iter_jsonl(path, tolerate_truncated_tail=True):
        row = _check_row(obj, path, line)
        if row["id"] in seen:
            raise InputError(f"{where(path, line, 'id')}: duplicate id '{row['id']}' (first at line {seen[row['id']]})")
        seen[row["id"]] = line
        rows.append(row)
    return rows


def _read_json(path: Path) -> dict:
    """A JSON object file; {} when absent, InputError when it does not parse."""
    if not path.exists():
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def metrics_file(predictions: str | os.PathLike) -> Path:
    """`<stem>.metrics.json` beside the predictions (as eval/run_eval.py writes it)."""
    path = Path(predictions)
    return path.with_name(path.stem + ".metrics.json")


def page_path(predictions: str | os.PathLike) -> Path:
    """The run's page: `<stem>.html` beside the predictions."""
    return Path(predictions).with_suffix(".html")


def compare_path(predictions: str | os.PathLike, other: str | os.PathLike) -> Path:
    """The side-by-side page of two runs: `<stem>_vs_<other stem>.html` beside the first."""
    path = Path(predictions)
    return path.with_name(f"{path.stem}_vs_{Path(other).stem}.html")


def _input_examples(metrics: dict, rows: list[dict]) -> tuple[dict[str, Example], str]:
    """The eval input file's examples by id (for passage texts and full requests), and a note on the source."""
    input_file, task = metrics.get("input_file"), metrics.get("task")
    if not input_file or not task:
        return {}, "no eval input file in the metrics"
    ndocs = max((len(r["passages"]) for r in rows), default=0)
    try:
        examples = load_examples(task, input_file, ndocs, need_passages=ndocs > 0)
    except InputError as e:
        return {}, f"eval input file not used: {e}"
    return {ex.key: ex for ex in examples}, f"eval input file {input_file}"


def _trajectory_passages(text: str) -> list[tj.Passage]:
    """The passages written into a trajectory: SMART's `<retrieval>` block or vanilla RAG's `Passages:` block."""
    if tj.RETRIEVAL_OPEN in text:
        return tj.parse_long(text)[0].passages
    if text.startswith(VANILLA_PASSAGES):
        passages = tj.parse_retrieval(text[len(VANILLA_PASSAGES):])
        if passages:  # the last one runs on into the request: cut at the blank line before it
            passages[-1].text = passages[-1].text.split("\n\n")[0].strip()
        return passages
    return []


def _same_title(a: str, b: str) -> bool:
    return tj.normalize_space(a) == tj.normalize_space(b)


def passage_texts(row: dict, example: Example | None) -> list[str | None]:
    """The text of each of the row's passages: from its trajectory, else the input example (by id and title)."""
    written = _trajectory_passages(row["trajectory"])
    given = dict(zip(example.passage_ids, example.passages)) if example else {}
    texts: list[str | None] = []
    for i, passage in enumerate(row["passages"]):
        title, source = str(passage.get("title", "")), given.get(str(passage.get("id")))
        if i < len(written) and _same_title(written[i].title, title):
            texts.append(written[i].text)
        elif source is not None and _same_title(source.title, title):
            texts.append(source.text)
        else:
            texts.append(None)
    return texts


def load_run(predictions: str | os.PathLike, label: str | None = None) -> Run:
    """Read a predictions file, the metrics beside it and the passage texts of its rows."""
    path = Path(predictions)
    rows = read_predictions(path)
    metrics = _read_json(metrics_file(path))
    run_settings = _read_json(path.parent.parent / "settings.json") if path.parent.name == "eval" else {}
    examples, note = _input_examples(metrics, rows)
    texts = {r["id"]: passage_texts(r, examples.get(r["id"])) for r in rows}
    requests = {key: ex.request for key, ex in examples.items()}
    return Run(path, label or path.stem, str(metrics.get("task") or path.stem), metrics, run_settings, rows, texts,
               requests, f"passage texts: trajectories, then {note}")


# ----------------------------------------------------------------------------------------------- the items
@dataclass
class Item:
    """One example of the page: its row in `run` and, side by side, in the compared run `other` (None: absent)."""

    run: Run
    other: Run | None
    key: str
    a: dict | None
    b: dict | None


def result(row: dict | None) -> str:
    """correct (score 1), partial, wrong (score 0), unscored (no score) or missing (no row)."""
    if row is None:
        return "missing"
    score = row.get("score")
    if score is None:
        return "unscored"
    return "correct" if score >= 1 else "wrong" if score <= 0 else "partial"


def differences(a: dict | None, b: dict | None) -> list[str]:
    """How two rows of the same example differ: `missing` (one is absent), `score`, `answer` (normalized)."""
    if a is None or b is None:
        return ["missing"]
    out = ["score"] * (a.get("score") != b.get("score"))
    return out + ["answer"] * (normalize_answer(a["answer"]) != normalize_answer(b["answer"]))


def join(runs: list[Run], compare: list[Run] | None) -> list[Item]:
    """Items of each run in file order; with `compare`, each run's rows joined on id with its partner's."""
    items = []
    for k, run in enumerate(runs):
        partner = compare[k] if compare else None
        other = {r["id"]: r for r in partner.rows} if partner else {}
        items += [Item(run, partner, r["id"], r, other.pop(r["id"], None)) for r in run.rows]
        items += [Item(run, partner, key, None, r) for key, r in other.items()]
    return items


# ----------------------------------------------------------------------------------------------- HTML
def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "–"
    return str(value)


def _table(pairs: dict) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in pairs.items())
    return f'<table class="kv">{rows}</table>'


def agent_counts(rows: list[dict]) -> dict[str, tuple[int, int]]:
    """Per agent: (rows that took its fallback, rows with a problem of that agent); `other` for unprefixed problems."""
    out = {}
    for agent in FALLBACKS:
        out[agent] = (sum(agent in r["fallbacks"] for r in rows),
                      sum(any(p.startswith(agent + ":") for p in r["problems"]) for r in rows))
    other = sum(any(not p.startswith(tuple(a + ":" for a in FALLBACKS)) for p in r["problems"]) for r in rows)
    if other:
        out["other"] = (0, other)
    return out


def _summary(run: Run) -> str:
    """The run's header block: file, metrics, settings, per-agent counts, most frequent problems."""
    metrics = {k: v for k, v in run.metrics.items() if k != "settings"}
    if not metrics:
        scores = [r["score"] for r in run.rows if r.get("score") is not None]
        metrics = {"n": len(run.rows), "score": 100 * sum(scores) / len(scores) if scores else None,
                   "note": "no metrics file beside the predictions"}
    counts = agent_counts(run.rows)
    agents = "".join(f"<tr><th>{esc(a)}</th><td>{fb}</td><td>{pr}</td></tr>" for a, (fb, pr) in counts.items())
    kinds = Counter(tj.problem_kind(p) for r in run.rows for p in r["problems"]).most_common(8)
    out = [f'<section class="summary"><h2>{esc(run.label)}</h2><p class="muted">{esc(run.path)}</p>',
           "<h3>metrics</h3>", _table(metrics)]
    if run.metrics.get("settings"):
        out += ["<h3>evaluation settings</h3>", _table(run.metrics["settings"])]
    if run.run_settings:
        out += ["<h3>run settings</h3>", _table(run.run_settings)]
    out += [f'<h3>per agent ({len(run.rows)} rows)</h3><table class="counts"><tr><th>agent</th><th>fallbacks</th>'
            f"<th>rows with problems</th></tr>{agents}</table>"]
    if kinds:
        out.append("<h3>problems</h3><ul>" + "".join(f"<li>{n} × {esc(k)}</li>" for k, n in kinds) + "</ul>")
    out.append(f'<p class="muted">{esc(run.note)}</p></section>')
    return "".join(out)


def _compare_summary(items: list[Item], runs: list[Run], compare: list[Run]) -> str:
    """Agreement of the two sides: both right, only one right, answers differing, missing rows; input mismatches."""
    a = esc(runs[0].label if len(runs) == 1 else "first runs")
    b = esc(compare[0].label if len(compare) == 1 else "second runs")
    both = [i for i in items if i.a and i.b]
    pairs = {
        "examples": len(items), "in both": len(both),
        "both correct": sum(result(i.a) == result(i.b) == "correct" for i in both),
        f"only {a} correct": sum(result(i.a) == "correct" != result(i.b) for i in both),
        f"only {b} correct": sum(result(i.b) == "correct" != result(i.a) for i in both),
        "differ in score or answer": sum(bool(differences(i.a, i.b)) for i in items),
        "differ in score": sum("score" in differences(i.a, i.b) for i in items),
        f"missing in {a}": sum(i.a is None for i in items), f"missing in {b}": sum(i.b is None for i in items)}
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in pairs.items())
    warnings = [f"{esc(x.label)} and {esc(y.label)} were evaluated on different inputs "
                f"({esc(x.metrics.get('input_file'))}, {esc(y.metrics.get('input_file'))})"
                for x, y in zip(runs, compare) if x.metrics.get("input_file") != y.metrics.get("input_file")]
    notes = "".join(f'<p class="warn">{w}</p>' for w in warnings)
    return f'<section class="summary"><h2>{a} vs {b}</h2><table class="kv">{rows}</table>{notes}</section>'


def find_span(text: str, span: str) -> tuple[int, int] | None:
    """Where `span` occurs in `text` (ignoring case and how whitespace is spaced); None when it does not."""
    words = span.split()
    m = re.search(r"\s+".join(map(re.escape, words)), text, flags=re.IGNORECASE) if words else None
    return m.span() if m else None


def _passage(anchor: str, index: int, passage: dict, text: str | None, fact: dict | None, judged: bool,
             gold: bool, cited: bool) -> str:
    """One retrieved passage: number, title, verdict, gold/cited flags, the text with the located fact marked."""
    badges = []
    if fact is not None:
        verdict = ("rel", "relevant") if fact["relevant"] else ("irr", "irrelevant")
        badges.append('<span class="b {}">{}</span>'.format(*verdict))
    elif judged:
        badges.append('<span class="b nj">not judged</span>')
    badges += ['<span class="b gold">holds gold</span>'] * gold + ['<span class="b cited">cited</span>'] * cited
    span = find_span(text, fact["text"]) if text is not None and fact and fact["relevant"] else None
    if text is None:
        body = '<p class="muted">passage text not recorded</p>'
    elif span is None:
        body = f'<p class="ptext">{esc(text)}</p>'
    else:
        s, t = span
        body = f'<p class="ptext">{esc(text[:s])}<mark>{esc(text[s:t])}</mark>{esc(text[t:])}</p>'
    if fact and fact["relevant"] and span is None:
        reason = "not found verbatim in the passage" if text is not None else "passage text unknown"
        body += f'<p class="fact">located fact ({reason}): <q>{esc(fact["text"])}</q></p>'
    title = esc(passage.get("title", ""))
    return (f'<div class="passage" id="{anchor}-p{index}"><div class="phead">[{index}] <b>{title}</b> '
            f'{" ".join(badges)}</div>{body}</div>')


def _side(n: int, side: str, run: Run, row: dict | None, compare: bool) -> str:
    """One run's part of a card: queries, passages, answer with citations, gold and score, problems, trajectory."""
    head = f'<h4>{esc(run.label)} <span class="b {result(row)}">{result(row)}</span></h4>' if compare else ""
    if row is None:
        return f'<section class="side">{head}<p class="muted">not in this run</p></section>'
    anchor = f"item-{n}-{side}"
    out = [f'<section class="side">{head}']
    if row["queries"]:
        out.append('<div class="label">queries</div><ol class="queries">'
                   + "".join(f"<li>{esc(q)}</li>" for q in row["queries"]) + "</ol>")
    if row["passages"]:
        facts = {f["index"]: f for f in row["facts"]}
        gold, cited = set(row.get("gold_passages") or []), set(row["citations"])
        texts = run.texts.get(row["id"], [])
        out.append('<div class="label">passages</div>')
        out += [_passage(anchor, i, p, texts[i - 1] if i <= len(texts) else None, facts.get(i),
                         "locator_output" in row, i in gold, i in cited)
                for i, p in enumerate(row["passages"], start=1)]
    links = []
    for c in row["citations"]:
        ok = 1 <= c <= len(row["passages"])
        links.append(f'<a class="cite" href="#{anchor}-p{c}">[{c}]</a>' if ok
                     else f'<span class="b bad">[{c}] no such passage</span>')
    cites = f' <span class="cites">cites {" ".join(links)}</span>' if links else ""
    answer = esc(row["answer"]) or "<i>(empty)</i>"
    out.append(f'<div class="label">answer</div><div class="answer">{answer}{cites}</div>')
    score = "–" if row.get("score") is None else f'{row["score"]:g}'
    label = f' · parsed label <b>{esc(_fmt(row["label"]))}</b>' if "label" in row else ""
    golds = " | ".join(esc(g) for g in row.get("golds") or []) or "–"
    out.append(f'<div class="golds">gold: <b>{golds}</b> · score <b>{score}</b>{label}</div>')
    if row["fallbacks"]:
        out.append("<div>" + " ".join(f'<span class="b fb">{esc(f)} fallback</span>' for f in row["fallbacks"])
                   + "</div>")
    if row["problems"]:
        out.append('<ul class="problems">' + "".join(f"<li>{esc(p)}</li>" for p in row["problems"]) + "</ul>")
    out.append(f'<details><summary>raw trajectory</summary><pre>{esc(row["trajectory"])}</pre></details></section>')
    return "".join(out)


def _card(n: int, item: Item) -> str:
    """One example as an inert <template>; its data-* attributes are what the filters read."""
    run, other, a, b = item.run, item.other, item.a, item.b
    rows = [r for r in (a, b) if r is not None]
    first = rows[0]
    fallbacks = sorted({f for r in rows for f in r["fallbacks"]})
    text = " ".join([item.key, first["question"]] + [r["answer"] for r in rows]).lower()
    attrs = {"data-dataset": run.dataset, "data-result": result(a), "data-fallbacks": " ".join(fallbacks),
             "data-problems": "1" if any(r["problems"] for r in rows) else "", "data-text": text}
    if other is not None:
        attrs.update({"data-result-b": result(b), "data-compare": " ".join(differences(a, b)) or "same"})
    request = run.requests.get(item.key) or (other.requests.get(item.key) if other else None)
    request_html = f'<pre class="request">{esc(request)}</pre>' if request and request != first["question"] else ""
    sides = _side(n, "a", run, a, other is not None) + (_side(n, "b", other, b, True) if other is not None else "")
    badge = "" if other is not None else f'<span class="b {result(a)}">{result(a)}</span> '
    data = " ".join(f'{k}="{esc(v)}"' for k, v in attrs.items())
    return (f'<template class="item" {data}>'
            f'<article class="card" id="item-{n}"><div class="meta">{badge}'
            f'<span class="b ds">{esc(run.dataset)}</span> <code>{esc(item.key)}</code> '
            f'<span class="muted">#{n + 1}</span></div>'
            f'<h3 class="question">{esc(first["question"])}</h3>{request_html}'
            f'<div class="sides{" two" if other is not None else ""}">{sides}</div></article></template>')


def _select(name: str, label: str, options: list[tuple[str, str]]) -> str:
    opts = "".join(f'<option value="{esc(v)}">{esc(t)}</option>' for v, t in options)
    return f'<label>{esc(label)} <select name="{name}">{opts}</select></label>'


def _filters(items: list[Item], a_label: str, b_label: str | None) -> str:
    def results(side: str) -> list[tuple[str, str]]:
        present = {result(getattr(i, side)) for i in items}
        return [("", "all")] + [(r, r) for r in RESULTS if r in present]

    datasets = list(dict.fromkeys(i.run.dataset for i in items))
    out = [_select("result", f"result ({a_label})" if b_label else "result", results("a"))]
    if b_label is not None:
        out += [_select("result_b", f"result ({b_label})", results("b")),
                _select("compare", "the two runs", [("", "all"), ("differ", "differ in score or answer"),
                                                    ("score", "differ in score"), ("same", "same score and answer")])]
    out += [_select("fallback", "fallback / problem", [("", "any"), ("none", "no fallback")]
                    + [(a, f"{a} fallback") for a in FALLBACKS] + [("problem", "any parser problem")]),
            _select("dataset", "dataset", [("", "all")] + [(d, d) for d in datasets]),
            '<label>search <input type="search" name="q" placeholder="question, answer or id"></label>',
            '<output id="count"></output>']
    return f'<form id="filters">{"".join(out)}</form>'


PAGER = ('<nav class="pager"><button type="button" class="prev">&lsaquo; previous</button> <span class="pageinfo">'
         '</span> <button type="button" class="next">next &rsaquo;</button></nav>')

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1500px;padding:0 16px 40px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin:4px 0}h3{font-size:13px;margin:10px 0 4px}h4{margin:0 0 6px}
.summaries{display:flex;flex-wrap:wrap;gap:12px}
.summary{border:1px solid #ccc;border-radius:6px;padding:8px 12px;flex:1 1 380px}
table{border-collapse:collapse}th,td{padding:1px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #eee}
.kv td{word-break:break-all}.muted{color:#777}.warn{color:#a40}
#filters{position:sticky;top:0;background:#f7f7f7;border-bottom:1px solid #ccc;padding:8px;display:flex;flex-wrap:wrap;
gap:12px;align-items:center;z-index:1;margin-top:12px}#count{font-weight:bold}
.pager{margin:10px 0;display:flex;gap:8px;align-items:center}
.card{border:1px solid #ccc;border-radius:6px;margin:12px 0;padding:8px 12px}.question{font-size:15px;margin:4px 0}
.sides.two{display:grid;grid-template-columns:1fr 1fr;gap:12px}.side{min-width:0}
.label{font-size:11px;text-transform:uppercase;color:#777;margin-top:6px}.queries{margin:2px 0 2px 20px;padding:0}
.passage{border-left:3px solid #ddd;padding:2px 8px;margin:4px 0}.passage:target{background:#fffbd6}
.ptext{margin:2px 0;white-space:pre-wrap}mark{background:#ffe066}.fact{margin:2px 0;color:#555}
.answer{font-weight:600;white-space:pre-wrap}.cite{margin-left:4px}
.b{display:inline-block;font-size:11px;border-radius:3px;padding:0 5px;background:#eee}
.correct{background:#c8ecc8}.wrong{background:#f6caca}.partial{background:#f6e3b0}.rel{background:#c8ecc8}
.irr{background:#e4e4e4}.nj,.bad,.fb{background:#f6caca}.gold{background:#fff0b3}.cited{background:#cfe0fb}
.ds{background:#dde}.problems{color:#a00;margin:2px 0}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:6px;margin:4px 0}
"""

# Filters and pages the <template> cards; reads and writes the filter state in the URL fragment (#result=wrong&...).
JS = """
"use strict";
(function () {
  var items = Array.prototype.slice.call(document.querySelectorAll("template.item"));
  var form = document.getElementById("filters"), cards = document.getElementById("cards");
  var size = parseInt(cards.dataset.pageSize, 10), page = 0, shown = [];
  function val(name) { var el = form.elements.namedItem(name); return el ? el.value : ""; }
  function keep(t) {
    var d = t.dataset, fb = val("fallback"), q = val("q").trim().toLowerCase();
    if (val("result") && d.result !== val("result")) return false;
    if (val("result_b") && d.resultB !== val("result_b")) return false;
    var cmp = val("compare"), diff = (d.compare || "").split(" ");
    if (cmp === "differ" ? d.compare === "same" : cmp && diff.indexOf(cmp) < 0) return false;
    if (val("dataset") && d.dataset !== val("dataset")) return false;
    if (fb === "none" && d.fallbacks) return false;
    if (fb === "problem" && !d.problems) return false;
    if (fb && fb !== "none" && fb !== "problem" && d.fallbacks.split(" ").indexOf(fb) < 0) return false;
    return !q || d.text.indexOf(q) >= 0;
  }
  function saveState() {
    var p = new URLSearchParams();
    Array.prototype.forEach.call(form.elements, function (el) { if (el.name && el.value) p.set(el.name, el.value); });
    if (page > 0) p.set("page", String(page + 1));
    var url = p.toString() ? "#" + p.toString() : location.pathname + location.search;
    try { history.replaceState(null, "", url); } catch (e) { /* some browsers refuse on file: URLs */ }
  }
  function render() {
    var pages = Math.max(1, Math.ceil(shown.length / size));
    page = Math.min(Math.max(page, 0), pages - 1);
    var frag = document.createDocumentFragment();
    shown.slice(page * size, (page + 1) * size).forEach(function (t) {
      frag.appendChild(document.importNode(t.content, true));
    });
    cards.replaceChildren(frag);
    document.getElementById("count").textContent = shown.length + " of " + items.length + " examples";
    Array.prototype.forEach.call(document.querySelectorAll(".pager"), function (nav) {
      nav.querySelector(".pageinfo").textContent = "page " + (page + 1) + " of " + pages;
      nav.querySelector(".prev").disabled = page === 0;
      nav.querySelector(".next").disabled = page >= pages - 1;
    });
    saveState();
  }
  function state() {
    return Array.prototype.map.call(form.elements, function (el) { return el.name ? el.name + "=" + el.value : ""; })
      .join("&");
  }
  var filtered = null;  // the form state the cards were filtered for
  function filter() {  // on "input", and on "change": chromedriver picking an option fires only that
    if (state() === filtered) return;
    filtered = state(); shown = items.filter(keep); page = 0; render();
  }
  function turn(step) { page += step; render(); form.scrollIntoView(); }
  if (location.hash.indexOf("=") >= 0) {
    var p = new URLSearchParams(location.hash.slice(1));
    p.forEach(function (v, k) { var el = form.elements.namedItem(k); if (el) el.value = v; });
  }
  var start = parseInt(new URLSearchParams(location.hash.slice(1)).get("page") || "1", 10) - 1;
  form.addEventListener("input", filter);
  form.addEventListener("change", filter);
  form.addEventListener("submit", function (e) { e.preventDefault(); });
  Array.prototype.forEach.call(document.querySelectorAll(".pager"), function (nav) {
    nav.querySelector(".prev").addEventListener("click", function () { turn(-1); });
    nav.querySelector(".next").addEventListener("click", function () { turn(1); });
  });
  filtered = state();
  shown = items.filter(keep);
  page = isNaN(start) ? 0 : start;
  render();
})();
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode() + "'"


def render_page(runs: list[Run], compare: list[Run] | None = None, title: str | None = None) -> str:
    """The whole page: the runs (several files make the dataset filter useful) and, optionally, their partners
    (`compare[k]` beside `runs[k]`, joined on id)."""
    if compare is not None and len(compare) != len(runs):
        raise InputError(f"{len(runs)} runs but {len(compare)} runs to compare with (one partner per run)")
    items = join(runs, compare)
    a_label = runs[0].label if len(runs) == 1 else "first"
    b_label = (compare[0].label if len(compare) == 1 else "second") if compare else None
    title = title or (f"{a_label} vs {b_label}" if b_label else " + ".join(r.label for r in runs))
    summaries = [_summary(r) for r in runs] + [_summary(r) for r in compare or []]
    if compare:
        summaries.insert(0, _compare_summary(items, runs, compare))
    csp = (f"default-src 'none'; style-src {_csp_hash(CSS)}; script-src {_csp_hash(JS)}; "
           "base-uri 'none'; form-action 'none'")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)} · SMART trajectory viewer</title><style>{CSS}</style></head><body>"
            f"<h1>SMART trajectory viewer: {esc(title)}</h1>"
            f'<div class="summaries">{"".join(summaries)}</div>'
            f'{_filters(items, a_label, b_label)}{PAGER}<main id="cards" data-page-size="{PAGE_SIZE}"></main>{PAGER}'
            f"<noscript><p>The examples are shown by this page's own script: enable JavaScript.</p></noscript>"
            f'{"".join(_card(n, item) for n, item in enumerate(items))}<script>{JS}</script></body></html>\n')


def write_page(output: str | os.PathLike, runs: list[Run], compare: list[Run] | None = None,
               title: str | None = None) -> Path:
    """Render and write the page atomically (never a half-written file); returns its path."""
    page = render_page(runs, compare, title)
    with atomic_write(output) as f:
        f.write(page)
    return Path(output)


def write_run_page(predictions: str | os.PathLike) -> Path:
    """The page of one run, `<stem>.html` beside its predictions (what eval/run_eval.py writes after each run)."""
    return write_page(page_path(predictions), [load_run(predictions)])


# ----------------------------------------------------------------------------------------------- screenshots
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
WINDOW = (1280, 900)  # CSS pixels (at device scale 1: the PNG's pixels)


class BrowserError(RuntimeError):
    """No browser to open a page with, or the page's script did not show its cards."""


def find_browser() -> tuple[str, str] | None:
    """(Chromium or Chrome, chromedriver): $CHROME_BIN and $CHROMEDRIVER, else the first found on PATH; None when
    either is missing (Debian: apt-get install chromium chromium-driver)."""
    env = os.environ
    browser = shutil.which(env["CHROME_BIN"]) if env.get("CHROME_BIN") else next(
        filter(None, map(shutil.which, BROWSERS)), None)
    driver = shutil.which(env.get("CHROMEDRIVER") or "chromedriver")
    return (browser, driver) if browser and driver else None


def open_browser(window: tuple[int, int] = WINDOW):
    """A headless Chromium driven by Selenium whose pages are `window` (width, height) CSS pixels at device scale 1;
    the caller quits it. BrowserError when none is found."""
    found = find_browser()
    if found is None:
        raise BrowserError("no Chromium and chromedriver found (Debian: apt-get install chromium chromium-driver; "
                           "or set CHROME_BIN and CHROMEDRIVER)")
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", f"--window-size={window[0]},{window[1]}"):
        options.add_argument(arg)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium will not start as root with its sandbox
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for BrowserError messages
    try:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=found[1]))
    except WebDriverException as e:  # a driver not matching the browser, a browser that does not start, ...
        raise BrowserError(f"{found[1]} could not start {found[0]}: {(e.msg or str(e)).strip()}") from None
    try:  # the viewport itself, whatever room the headless window keeps for its frame
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": window[0], "height": window[1], "deviceScaleFactor": 1, "mobile": False})
    except BaseException:
        driver.quit()
        raise
    return driver


def show(driver, page: str | os.PathLike, fragment: str = "", timeout: float = 20.0) -> None:
    """Load `page` from disk in `driver` with the filter state `fragment` (as in the page's URL:
    `result=wrong&fallback=locator`) and wait until its script has shown the cards; BrowserError when it does not
    (a script blocked by the Content-Security-Policy, or failing), with the browser console's errors."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    fragment = fragment.lstrip("#")
    driver.get("about:blank")  # a new document even when only the fragment changed
    driver.get(Path(page).resolve().as_uri() + (f"#{fragment}" if fragment else ""))
    try:
        WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
            'var c = document.getElementById("count"); return c && c.textContent;'))
    except TimeoutException:
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        raise BrowserError(f"{page}: the page's script showed no cards within {timeout:g} s"
                           + (f" ({'; '.join(errors)})" if errors else "")) from None


SCREENSHOT_AT = ("top", "cards")


def screenshot(page: str | os.PathLike, png: str | os.PathLike | None = None, fragment: str = "",
               window: tuple[int, int] = WINDOW, at: str = "top", driver=None) -> Path:
    """Save as PNG (default: the page's path, .png) what a `window` of headless Chromium shows of `page` opened with
    the filter state `fragment`, `at` the top of the page (summaries) or scrolled to its `cards` (the filters on
    top); written atomically. `driver`: an open browser to use (else one is started, then quit)."""
    if at not in SCREENSHOT_AT:
        raise ValueError(f"at: expected one of {', '.join(SCREENSHOT_AT)}, got {at!r}")
    png = Path(png) if png is not None else Path(page).with_suffix(".png")
    own = driver is None
    driver = open_browser(window) if own else driver
    try:
        show(driver, page, fragment)
        if at == "cards":
            driver.execute_script('document.getElementById("filters").scrollIntoView();')
        data = driver.get_screenshot_as_png()
    finally:
        if own:
            driver.quit()
    with atomic_write(png, "wb") as f:
        f.write(data)
    return png


def _ordered(names: set[str], known) -> list[str]:
    """`names` in the order of `known`, the others after them alphabetically."""
    return [n for n in known if n in names] + sorted(names - set(known))


def report_pages(run_dir: str | os.PathLike, pair: tuple[str, str] = ("smart", "vanilla_rag")) -> list[str]:
    """The quickstart report's viewer section: markdown lines linking the pages (paths relative to `run_dir`).

    Writes each eval page that is missing or older than its predictions or metrics, and per task a side-by-side
    page of the `pair` of methods. A page's screenshot (`<page>.png` beside it, eval/view_run.py --screenshot) is
    linked when there is one.
    """
    run_dir = Path(run_dir)

    def link(text: str, page: Path) -> str:
        shot = page.with_suffix(".png")
        return f"[{text}]({page.relative_to(run_dir)})" + (f" ([screenshot]({shot.relative_to(run_dir)}))"
                                                            if shot.exists() else "")

    found: dict[tuple[str, str], Path] = {}
    for metrics in sorted((run_dir / "eval").glob("*.metrics.json")):
        predictions = metrics.with_name(metrics.name.removesuffix(".metrics.json") + ".jsonl")
        if not predictions.exists():
            continue
        page = page_path(predictions)
        if not page.exists() or page.stat().st_mtime < max(predictions.stat().st_mtime, metrics.stat().st_mtime):
            write_run_page(predictions)
        info = _read_json(metrics)
        found[str(info.get("task")), str(info.get("method"))] = predictions
    tasks, methods = _ordered({t for t, _ in found}, TASKS), _ordered({m for _, m in found}, METHODS)
    lines = ["## Trajectory viewer", "",
             "One static page per evaluation (open it from disk): metrics, fallbacks and problems per agent, and every "
             "example with its queries, passages, located facts, cited answer and raw trajectory, with filters. "
             "`python eval/view_run.py PREDICTIONS.jsonl [--compare OTHER.jsonl]` rebuilds or compares any run.", ""]
    for task in tasks:
        links = [link(m, page_path(found[task, m])) for m in methods if (task, m) in found]
        if (task, pair[0]) in found and (task, pair[1]) in found:
            a, b = found[task, pair[0]], found[task, pair[1]]
            page = write_page(compare_path(a, b), [load_run(a)], [load_run(b)])
            links.append(link(f"{pair[0]} vs {pair[1]}, side by side", page))
        lines.append(f"- {task}: " + " · ".join(links))
    return lines + [""]
