"""The trajectory viewer (smart/evaluation/viewer.py, eval/view_run.py): a page built from hand-made predictions with every kind
of example (correct, wrong, each fallback, no relevant passage), escaping, located facts, citation links, per-agent
counts, side by side comparison, located errors on malformed files, the run_eval and report hooks, and the page's
own script driven over a DOM stub (node)."""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from smart import trajectory as tj
from smart.evaluation import viewer
from smart.inference.backends import Backend

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "eval"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


view_run = _load("view_run", REPO / "eval" / "view_run.py")
run_eval = _load("run_eval", REPO / "eval" / "run_eval.py")

XSS_QUESTION = 'Is <script>alert("q")</script> & "this" safe?'
XSS_ANSWER = "<img src=x onerror=alert(1)>"
# the eval input's passages per item: (id, title, text)
CTXS = {
    "ok": [("10", "Jharkhand", "Jharkhand is a state in India. The state was formed on 15 November 2000 from Bihar."),
           ("11", "Ranchi", "Ranchi is its capital."), ("12", "Pampas", "Plains in South America.")],
    "xss": [("20", "Tags & <b>", "Some <b>bold</b> & <i>text</i> and a \"quote\"."), ("21", "B", "Nothing here."),
            ("22", "C", "Nothing there.")],
    "intent": [("30", "Hamlet", "Hamlet is a tragedy written by William Shakespeare."), ("31", "B", "b text."),
               ("32", "C", "c text.")],
    "locator": [("40", "Paris", "Paris is the capital of France."), ("41", "B", "b text."), ("42", "C", "c text.")],
    "generator": [("50", "Everest", "Mount Everest is 8849 m high."), ("51", "K2", "K2 is in Pakistan."),
                  ("52", "C", "c text.")],
    "none": [("60", "Apples", "Apples are fruit."), ("61", "Pears", "Pears are fruit."), ("62", "Plums", "Plums too.")],
}
QUESTIONS = {"ok": "When was Jharkhand formed?", "xss": XSS_QUESTION, "intent": "Who wrote Hamlet?",
             "locator": "What is the capital of France?", "generator": "How high is Mount Everest?",
             "none": "When did the Moon form?"}
GOLDS = {"ok": ["2000"], "xss": ["yes"], "intent": ["Shakespeare"], "locator": ["Paris"], "generator": ["8849 m"],
         "none": ["4.5 billion years ago"]}


def passages(key: str) -> list[tj.Passage]:
    return [tj.Passage(title, text) for _, title, text in CTXS[key]]


def smart_row(key: str, answer: str, score: float, *, facts: list[tj.Fact] | None = None, citations=(),
              fallbacks=(), problems=(), queries=None) -> dict:
    """A SMART prediction row as eval/run_eval.py writes it (trajectory rendered in the real format)."""
    question = QUESTIONS[key]
    queries = queries or [f"query for {key}"]
    prompt = tj.format_prompt(question)
    row = {"id": f"dev_{key}", "question": question, "method": "smart", "queries": queries,
           "passages": [{"id": pid, "title": title} for pid, title, _ in CTXS[key]], "facts": [], "answer": answer,
           "citations": list(citations), "fallbacks": list(fallbacks), "problems": list(problems),
           "intent_output": tj.render_intent(queries), "golds": GOLDS[key], "gold_passages": [1], "score": score}
    if facts is None:  # the locator's output was broken: the generator answered from the request alone
        row["locator_output"] = "garbage"
        row["trajectory"] = prompt + tj.GENERATOR + answer
    else:
        row["facts"] = [{"index": f.index, "relevant": f.relevant, "title": f.title, "text": f.text} for f in facts]
        row["locator_output"] = tj.render_locator(facts)
        t = tj.Trajectory(queries, passages(key), facts, answer, list(citations))
        row["trajectory"] = prompt + tj.render_long(t)
    return row


def vanilla_row(key: str, answer: str, score: float) -> dict:
    """A vanilla RAG row: passages then the request in one chat message."""
    question = QUESTIONS[key]
    return {"id": f"dev_{key}", "question": question, "method": "vanilla_rag", "queries": [question],
            "passages": [{"id": pid, "title": title} for pid, title, _ in CTXS[key]], "facts": [], "answer": answer,
            "citations": [], "fallbacks": [], "problems": [], "golds": GOLDS[key], "gold_passages": [1],
            "trajectory": f"Passages:\n{tj.render_passages(passages(key))}\n\n{question}\n\n{answer}", "score": score}


def irrelevant(*indices: int) -> list[tj.Fact]:
    return [tj.Fact(i, False) for i in indices]


SMART = [
    smart_row("ok", "2000", 1.0, facts=[tj.Fact(1, True, "Jharkhand", "The state was formed on 15 November 2000")]
              + irrelevant(2, 3), citations=[1]),
    smart_row("xss", XSS_ANSWER, 0.0, facts=[tj.Fact(1, True, "Tags & <b>", "Some <b>bold</b> & <i>text</i>")]
              + irrelevant(2, 3), citations=[1]),
    smart_row("intent", "William Shakespeare", 1.0, queries=[QUESTIONS["intent"]], fallbacks=["intent"],
              problems=["intent: no Search(...)"], facts=[tj.Fact(1, True, "Hamlet", "written by William Shakespeare")]
              + irrelevant(2, 3), citations=[1]),
    smart_row("locator", "Lyon", 0.0, facts=None, fallbacks=["locator"],
              problems=["locator: missing </eol>", "locator: no [Relevant]/[Irrelevant] line"]),
    smart_row("generator", "8849 metres tall", 0.0, fallbacks=["generator"], problems=["generator: missing </eog>"],
              facts=[tj.Fact(1, True, "Everest", "Mount Everest is 8849 m high."),
                     tj.Fact(2, True, "K2", "K2 is the tallest mountain.")] + irrelevant(3), citations=[1, 7]),
    smart_row("none", "a long time ago", 0.0, facts=irrelevant(1, 2, 3)),
]
VANILLA = [vanilla_row("ok", "2000", 1.0), vanilla_row("xss", "yes", 1.0),
           vanilla_row("intent", "Shakespeare wrote it", 1.0), vanilla_row("locator", "Paris", 1.0),
           vanilla_row("generator", "8849 metres tall", 0.0)]  # "none" is missing: it shows as differing


def write_run(folder: Path, stem: str, method: str, rows: list[dict], input_file: Path | None) -> Path:
    path = folder / f"{stem}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    score = 100 * sum(r["score"] for r in rows) / len(rows)
    metrics = {"task": "popqa", "method": method, "model": "m", "score": score, "n": len(rows), "fallbacks": {},
               "settings": {"ndocs": 3, "retrieval": "static"}}
    if input_file:
        metrics["input_file"] = str(input_file)
    viewer.metrics_file(path).write_text(json.dumps(metrics))
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A quickstart-like run folder: eval/popqa_smart.jsonl and eval/popqa_vanilla_rag.jsonl over popqa_dev.jsonl."""
    (tmp_path / "eval").mkdir()
    dev = tmp_path / "popqa_dev.jsonl"
    dev.write_text("".join(json.dumps({"id": f"dev_{k}", "question": QUESTIONS[k], "answers": GOLDS[k],
                                       "ctxs": [{"id": i, "title": t, "text": x} for i, t, x in ctxs]}) + "\n"
                           for k, ctxs in CTXS.items()))
    write_run(tmp_path / "eval", "popqa_smart", "smart", SMART, dev)
    write_run(tmp_path / "eval", "popqa_vanilla_rag", "vanilla_rag", VANILLA, dev)
    return tmp_path


def card(page: str, key: str) -> str:
    """The <template> of the example with id `key`."""
    m = re.search(r'<template class="item"[^>]*data-text="' + re.escape(key) + r' .*?</template>', page, flags=re.S)
    assert m, f"no card for {key}"
    return m.group(0)


def anchors(html_text: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', html_text))


def smart_page(run_dir: Path) -> str:
    return viewer.render_page([viewer.load_run(run_dir / "eval" / "popqa_smart.jsonl")])


# ----------------------------------------------------------------------------------------------- one run
def test_page_has_a_card_per_example_with_every_part(run_dir):
    page = smart_page(run_dir)
    assert page.count('<template class="item"') == len(SMART)
    ok = card(page, "dev_ok")
    assert 'data-result="correct"' in ok and 'data-dataset="popqa"' in ok and 'data-fallbacks=""' in ok
    assert "<h3 class=\"question\">When was Jharkhand formed?</h3>" in ok
    assert "<li>query for ok</li>" in ok  # the reconstructed queries
    assert ok.count('class="passage"') == 3 and ok.count("relevant</span>") == 3  # a verdict per passage
    assert '<span class="b rel">relevant</span>' in ok and ok.count('<span class="b irr">irrelevant</span>') == 2
    assert "gold: <b>2000</b> · score <b>1</b>" in ok
    assert "<details><summary>raw trajectory</summary><pre>&lt;|Instruction|&gt;:" in ok
    # the metrics and settings head the page, and the filters offer what the run holds
    assert "<th>score</th><td>33.33</td>" in page and "<th>retrieval</th><td>static</td>" in page
    for option in ('value="correct"', 'value="wrong"', 'value="intent"', 'value="locator"', 'value="generator"',
                   'value="popqa"', 'name="q"'):
        assert option in page
    assert 'value="partial"' not in page  # no partial score in this run


def test_each_kind_of_example(run_dir):
    page = smart_page(run_dir)
    assert 'data-result="wrong"' in card(page, "dev_none")
    for key, kind in (("dev_intent", "intent"), ("dev_locator", "locator"), ("dev_generator", "generator")):
        c = card(page, key)
        assert f'data-fallbacks="{kind}"' in c and 'data-problems="1"' in c
        assert f'<span class="b fb">{kind} fallback</span>' in c
    assert "<li>intent: no Search(...)</li>" in card(page, "dev_intent")
    assert "<li>locator: missing &lt;/eol&gt;</li>" in card(page, "dev_locator")
    # locator fallback: no verdicts (the locator was not used), the texts come from the eval input file
    locator = card(page, "dev_locator")
    assert locator.count('<span class="b nj">not judged</span>') == 3
    assert "Paris is the capital of France." in locator
    # no relevant passage: three irrelevant verdicts, nothing marked, nothing cited
    none = card(page, "dev_none")
    assert none.count('<span class="b irr">irrelevant</span>') == 3 and "<mark>" not in none and "cites" not in none


def test_model_output_and_passages_stay_text(run_dir):
    page = smart_page(run_dir)
    assert page.count("<script") == 1  # the page's own script only
    assert "<script>alert" not in page and XSS_ANSWER not in page and "<b>bold</b>" not in page
    xss = card(page, "dev_xss")
    assert "Is &lt;script&gt;alert(&quot;q&quot;)&lt;/script&gt; &amp; &quot;this&quot; safe?" in xss
    assert "&lt;img src=x onerror=alert(1)&gt;" in xss
    assert "<b>Tags &amp; &lt;b&gt;</b>" in xss  # passage title
    assert "<mark>Some &lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;text&lt;/i&gt;</mark> and a &quot;quote&quot;." in xss
    # the Content-Security-Policy admits exactly this page's script and style, nothing from outside
    script = re.search(r"<script>(.*)</script>", page, flags=re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src &#x27;sha256-{digest}&#x27;" in page and "default-src &#x27;none&#x27;" in page
    assert "unsafe" not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)


def test_located_fact_is_marked_inside_its_passage(run_dir):
    page = smart_page(run_dir)
    ok = card(page, "dev_ok")
    passage = re.search(r'<div class="passage" id="item-0-a-p1">.*?</p></div>', ok, flags=re.S).group(0)
    assert ('<p class="ptext">Jharkhand is a state in India. <mark>The state was formed on 15 November 2000</mark>'
            " from Bihar.</p>") in passage
    # a "fact" that is not in its passage is shown beside it, flagged
    generator = card(page, "dev_generator")
    assert "<mark>Mount Everest is 8849 m high.</mark>" in generator
    assert "located fact (not found verbatim in the passage): <q>K2 is the tallest mountain.</q>" in generator
    assert viewer.find_span("a  b\nC d", "b c") == (3, 6)  # any spacing, any case


def test_citations_link_to_passage_anchors(run_dir):
    page = smart_page(run_dir)
    ok = card(page, "dev_ok")
    assert '<span class="cites">cites <a class="cite" href="#item-0-a-p1">[1]</a></span>' in ok
    assert "item-0-a-p1" in anchors(ok) and '<span class="b cited">cited</span>' in ok
    for c in [card(page, f"dev_{k}") for k in CTXS]:
        assert set(re.findall(r'href="#([^"]+)"', c)) <= anchors(c)  # every link lands in its own card
    generator = card(page, "dev_generator")
    assert '<a class="cite" href="#item-4-a-p1">[1]</a>' in generator
    assert '<span class="b bad">[7] no such passage</span>' in generator and 'href="#item-4-a-p7"' not in generator


def test_fallback_and_problem_counts_per_agent(run_dir):
    run = viewer.load_run(run_dir / "eval" / "popqa_smart.jsonl")
    assert viewer.agent_counts(run.rows) == {"intent": (1, 1), "locator": (1, 1), "generator": (1, 1)}
    rows = run.rows + [{**run.rows[0], "id": "x", "fallbacks": ["intent", "locator"],
                        "problems": ["intent: empty Search()", "fact [1] is not a verbatim span of its passage"]}]
    assert viewer.agent_counts(rows) == {"intent": (2, 2), "locator": (2, 1), "generator": (1, 1), "other": (0, 1)}
    page = smart_page(run_dir)
    for agent in ("intent", "locator", "generator"):
        assert f"<tr><th>{agent}</th><td>1</td><td>1</td></tr>" in page
    assert "1 × locator: missing &lt;/eol&gt;" in page  # problems by kind


def test_passage_texts_from_the_trajectory_without_the_input_file(run_dir):
    (run_dir / "popqa_dev.jsonl").unlink()
    smart = viewer.load_run(run_dir / "eval" / "popqa_smart.jsonl")
    assert smart.texts["dev_ok"] == [text for _, _, text in CTXS["ok"]]  # the <retrieval> block
    assert smart.texts["dev_locator"] == [None, None, None]  # the locator fallback's trajectory holds none
    assert "eval input file not used" in smart.note and "file not found" in smart.note
    vanilla = viewer.load_run(run_dir / "eval" / "popqa_vanilla_rag.jsonl")
    assert vanilla.texts["dev_generator"] == [text for _, _, text in CTXS["generator"]]  # the Passages: block
    page = viewer.render_page([smart])
    assert card(page, "dev_locator").count("passage text not recorded") == 3


# ----------------------------------------------------------------------------------------------- side by side
def test_compare_two_runs_side_by_side(run_dir):
    eval_dir = run_dir / "eval"
    smart = viewer.load_run(eval_dir / "popqa_smart.jsonl")
    vanilla = viewer.load_run(eval_dir / "popqa_vanilla_rag.jsonl")
    page = viewer.render_page([smart], [vanilla])
    assert page.count('<template class="item"') == len(SMART)
    differing = {key: attrs for key, attrs in re.findall(r'data-text="(\S+) [^"]*" data-result-b="\w+" '
                                                           r'data-compare="([^"]*)"', page)}
    assert differing == {"dev_ok": "same", "dev_xss": "score answer", "dev_intent": "answer",
                         "dev_locator": "score answer", "dev_generator": "same", "dev_none": "missing"}
    both = card(page, "dev_xss")
    assert both.count('<section class="side">') == 2 and '<div class="sides two">' in both
    assert "<h4>popqa_smart <span class=\"b wrong\">wrong</span></h4>" in both
    assert "<h4>popqa_vanilla_rag <span class=\"b correct\">correct</span></h4>" in both
    assert 'id="item-1-a-p1"' in both and 'id="item-1-b-p1"' in both  # each side's passages have their anchors
    assert '<p class="muted">not in this run</p>' in card(page, "dev_none")
    for name, value in (("only popqa_smart correct", 0), ("only popqa_vanilla_rag correct", 2),
                        ("differ in score or answer", 4), ("differ in score", 2), ("missing in popqa_vanilla_rag", 1)):
        assert f"<tr><th>{name}</th><td>{value}</td></tr>" in page
    assert 'value="differ"' in page and 'name="result_b"' in page


def test_cli_writes_pages_beside_the_predictions(run_dir, capsys):
    eval_dir = run_dir / "eval"
    assert view_run.main([str(eval_dir / "popqa_smart.jsonl")]) == 0
    assert (eval_dir / "popqa_smart.html").read_text().count('<template class="item"') == len(SMART)
    assert view_run.main([str(eval_dir / "popqa_smart.jsonl"), "--compare",
                          str(eval_dir / "popqa_vanilla_rag.jsonl")]) == 0
    assert "data-compare" in (eval_dir / "popqa_smart_vs_popqa_vanilla_rag.html").read_text()
    out = run_dir / "both.html"
    assert view_run.main([str(eval_dir / "popqa_smart.jsonl"), str(eval_dir / "popqa_vanilla_rag.jsonl"),
                          "--output", str(out)]) == 0
    assert out.read_text().count('<template class="item"') == len(SMART) + len(VANILLA)
    assert "wrote" in capsys.readouterr().out
    # two checkpoints' runs of the same name are told apart by their folders
    (run_dir / "other").mkdir()
    for name in ("popqa_smart.jsonl", "popqa_smart.metrics.json"):
        shutil.copy(eval_dir / name, run_dir / "other" / name)
    out = run_dir / "checkpoints.html"
    assert view_run.main([str(eval_dir / "popqa_smart.jsonl"), "--compare",
                          str(run_dir / "other" / "popqa_smart.jsonl"), "--output", str(out)]) == 0
    assert "<h2>eval/popqa_smart vs other/popqa_smart</h2>" in out.read_text()


@pytest.mark.parametrize("line, message", [
    ("{not json", ":2: invalid JSON"),
    (json.dumps({**SMART[0], "id": "dev_x", "facts": "none"}), ":2 field 'facts': expected list, got str"),
    (json.dumps({**SMART[0], "id": "dev_x", "facts": [{"index": "1", "relevant": True, "text": "a"}]}),
     ":2 field 'facts[0].index': expected int, got str"),
    (json.dumps({k: v for k, v in SMART[0].items() if k != "answer"} | {"id": "dev_x"}), ":2 field 'answer': missing"),
    (json.dumps(SMART[0]), ":2 field 'id': duplicate id 'dev_ok'"),
])
def test_malformed_predictions_give_one_located_error(tmp_path, capsys, line, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(SMART[0]) + "\n" + line + "\n" + json.dumps(SMART[1]) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        view_run.main([str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}{message}") and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [bad]  # no page, no temporary file left


# ----------------------------------------------------------------------------------------------- hooks
class CannedBackend(Backend):
    """Well-formed SMART steps and plain chat replies, whatever the prompt."""

    name = "canned"

    def _generate(self, prompts, max_new_tokens, stop, add_special_tokens):
        def reply(prompt: str) -> str:
            if prompt.endswith(tj.RECONSTRUCTOR):
                return "Search(<b>who</b>)</eor>"
            if prompt.endswith(tj.LOCATOR):
                return ("[Relevant]: [1] T\n was an Australian soldier and politician.\n[Irrelevant]: [2] x\n"
                        "[Irrelevant]: [3] x</eol>")
            return "politician\n[Cite]: [1]</eog>"
        return [reply(p) for p in prompts]

    def chat(self, conversations, max_new_tokens, stop=None):
        return ["a politician" for _ in conversations]


def test_run_eval_writes_the_page_beside_its_predictions(tmp_path):
    args = run_eval.parse_args(["--task", "popqa", "--input_file", str(FIXTURES / "popqa.jsonl"), "--method", "smart",
                                "vanilla_rag", "--output_dir", str(tmp_path)])
    backend = CannedBackend()
    for method in ("smart", "vanilla_rag"):
        run_eval.run_one(args, "popqa", str(FIXTURES / "popqa.jsonl"), method, str(tmp_path / f"popqa_{method}.jsonl"),
                         lambda: backend)
        page = (tmp_path / f"popqa_{method}.html").read_text()
        n = sum(1 for line in (FIXTURES / "popqa.jsonl").read_text().splitlines() if line.strip())
        assert page.count('<template class="item"') == n and "passage text not recorded" not in page
        assert "Major General George James Rankin" in page
    smart = (tmp_path / "popqa_smart.html").read_text()
    assert "<li>&lt;b&gt;who&lt;/b&gt;</li>" in smart
    assert "<mark>was an Australian soldier and politician.</mark>" in smart


def test_report_links_the_pages_and_writes_the_side_by_side_page(run_dir):
    from smart.evaluation.report import write_report

    report = write_report(run_dir, {}).read_text()
    assert "## Trajectory viewer" in report
    assert "[smart](eval/popqa_smart.html)" in report and "[vanilla_rag](eval/popqa_vanilla_rag.html)" in report
    assert "[smart vs vanilla_rag, side by side](eval/popqa_smart_vs_popqa_vanilla_rag.html)" in report
    for name in ("popqa_smart.html", "popqa_vanilla_rag.html", "popqa_smart_vs_popqa_vanilla_rag.html"):
        assert (run_dir / "eval" / name).stat().st_size > 0


# ----------------------------------------------------------------------------------------------- the script
DOM_STUB = r"""
// Runs the page's own script over a minimal DOM: the cards' data-* attributes and the form's controls.
const fs = require("fs");
const html = fs.readFileSync(process.argv[2], "utf8");
const steps = JSON.parse(process.argv[3]);
const unescape = (s) => s.replace(/&quot;/g, '"').replace(/&#x27;/g, "'").replace(/&lt;/g, "<")
  .replace(/&gt;/g, ">").replace(/&amp;/g, "&");
const camel = (s) => s.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
const items = [...html.matchAll(/<template class="item"([^>]*)>/g)].map((m) => {
  const dataset = {};
  for (const a of m[1].matchAll(/data-([a-z-]+)="([^"]*)"/g)) dataset[camel(a[1])] = unescape(a[2]);
  return { dataset, content: { key: dataset.text.split(" ")[0] } };
});
const controls = [...html.match(/<form id="filters">.*?<\/form>/s)[0].matchAll(/name="(\w+)"/g)]
  .map((m) => ({ name: m[1], value: "" }));
controls.namedItem = (name) => controls.find((c) => c.name === name) || null;
const listeners = {};
const form = { elements: controls, addEventListener: (type, f) => { listeners[type] = f; }, scrollIntoView() {} };
const button = () => ({ disabled: false, addEventListener(type, f) { this.click = f; } });
const pagers = [0, 1].map(() => ({ parts: { ".pageinfo": { textContent: "" }, ".prev": button(), ".next": button() },
  querySelector(sel) { return this.parts[sel]; } }));
const size = html.match(/<main id="cards" data-page-size="(\d+)"/)[1];
const cards = { dataset: { pageSize: size }, shown: [],
  replaceChildren(frag) { this.shown = frag.children.map((c) => c.key); } };
const count = { textContent: "" };
const location = { hash: steps.hash || "", pathname: "/page.html", search: "" };
const document = {
  querySelectorAll: (sel) => (sel === "template.item" ? items : pagers),
  getElementById: (id) => ({ filters: form, cards, count }[id]),
  createDocumentFragment: () => ({ children: [], appendChild(c) { this.children.push(c); } }),
  importNode: (node) => node,
};
const history = { replaceState(state, title, url) { location.hash = url.startsWith("#") ? url : ""; } };
const script = html.match(/<script>([\s\S]*)<\/script>/)[1];
new Function("document", "location", "history", script)(document, location, history);
const out = [];
const snapshot = () => out.push({ shown: cards.shown, count: count.textContent, hash: location.hash,
  page: pagers[0].parts[".pageinfo"].textContent });
snapshot();
for (const step of steps.actions) {
  if (step.click) pagers[0].parts["." + step.click].click();
  else { controls.namedItem(step.set).value = step.value; listeners.input(); }
  snapshot();
}
console.log(JSON.stringify(out));
"""


def drive(page: Path, actions: list[dict], hash_: str = "") -> list[dict]:
    """The page script's state (cards shown, count, fragment, page) at load and after each action."""
    stub = page.with_name("dom_stub.js")
    stub.write_text(DOM_STUB)
    done = subprocess.run(["node", str(stub), str(page), json.dumps({"actions": actions, "hash": hash_})],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")
def test_page_script_filters_and_pages(run_dir, monkeypatch):
    eval_dir = run_dir / "eval"
    page = viewer.write_page(run_dir / "cmp.html", [viewer.load_run(eval_dir / "popqa_smart.jsonl")],
                             [viewer.load_run(eval_dir / "popqa_vanilla_rag.jsonl")])
    keys = [f"dev_{k}" for k in CTXS]
    start, wrong, locator, differ, searched, cleared = drive(page, [
        {"set": "result", "value": "wrong"}, {"set": "fallback", "value": "locator"},
        {"set": "compare", "value": "differ"}, {"set": "q", "value": "HAMLET"}, {"set": "q", "value": ""}])
    assert start["shown"] == keys and start["count"] == f"{len(keys)} of {len(keys)} examples"
    assert wrong["shown"] == ["dev_xss", "dev_locator", "dev_generator", "dev_none"]
    assert wrong["hash"] == "#result=wrong"
    assert locator["shown"] == ["dev_locator"]
    assert differ["shown"] == ["dev_locator"] and differ["hash"] == "#result=wrong&compare=differ&fallback=locator"
    assert searched["shown"] == [] and searched["count"] == f"0 of {len(keys)} examples"
    assert cleared["shown"] == ["dev_locator"]
    # the state in the URL fragment is restored on load
    assert drive(page, [], "#compare=score")[0]["shown"] == ["dev_xss", "dev_locator"]
    # pages of PAGE_SIZE cards
    monkeypatch.setattr(viewer, "PAGE_SIZE", 2)
    page = viewer.write_page(run_dir / "paged.html", [viewer.load_run(eval_dir / "popqa_smart.jsonl")])
    first, second, third, last = drive(page, [{"click": "next"}, {"click": "next"}, {"click": "next"}])
    assert first["shown"] == keys[:2] and first["page"] == "page 1 of 3"
    assert second["shown"] == keys[2:4] and second["hash"] == "#page=2"
    assert third["shown"] == keys[4:] and last["shown"] == keys[4:] and last["page"] == "page 3 of 3"
