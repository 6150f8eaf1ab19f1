"""The paper's metrics (match, accuracy with robust label parsing, ASQA str-em / ROUGE-L / optional MAUVE)
and the results tables (a markdown row per run; the paper's layout across runs).

Scores are in [0, 1] per example; reported numbers are percentages.
"""
from __future__ import annotations

import logging
import re
import string
from pathlib import Path

from smart import paper
from smart.tasks import TASKS
from smart.trajectory import parse_verdict

log = logging.getLogger(__name__)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD's normalization)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _contains(prediction: str, gold: str) -> bool:
    """Normalized gold occurs in the normalized prediction, on word boundaries."""
    gold = normalize_answer(gold)
    return bool(gold) and f" {gold} " in f" {normalize_answer(prediction)} "


def match(prediction: str, golds: list[str]) -> float:
    """1.0 when any normalized gold string occurs inside the normalized prediction."""
    return float(any(_contains(prediction, g) for g in golds))


# ------------------------------------------------------------------------------------------- labels
_TRUE_FALSE = re.compile(r"\b(not correct|incorrect|correct|true|false|supports?|supported|refutes?|refuted)\b")
_TF_MAP = {"true": "true", "correct": "true", "supports": "true", "support": "true", "supported": "true",
           "false": "false", "incorrect": "false", "not correct": "false", "refutes": "false", "refute": "false",
           "refuted": "false"}
_VERDICT_FIELD = re.compile(r"(?:^|\|)\s*verdict\s*:", re.IGNORECASE | re.MULTILINE)


def _verdict_part(prediction: str) -> str:
    """Where an answer states its verdict: after its "Verdict:" field (a line's start or after "|", so never inside
    the spans of a claim-vs-fact answer, smart.trajectory.render_verdict); nothing of a claim-vs-fact answer
    without one (its spans quote the claim and the fact, they judge nothing); else the whole answer."""
    field = _VERDICT_FIELD.search(prediction)
    if field:
        return prediction[field.end():]
    return "" if parse_verdict(prediction) else prediction


def parse_true_false(prediction: str) -> str | None:
    """A true/false answer's label, the verdict the model wrote: 'true'/'false' from the first verdict word
    (true/false, supports/refutes, correct/incorrect) of its `_verdict_part`; else None."""
    m = _TRUE_FALSE.search(_verdict_part(prediction).lower())
    return _TF_MAP[m.group(1)] if m else None


def compared_verdict(prediction: str) -> str | None:
    """Diagnostic only (scoring reads `parse_true_false`): the verdict a claim-vs-fact answer's spans imply
    ("Claim: X | Fact: Y | Verdict: ...", smart.trajectory.render_verdict), 'true' exactly when the two spans are
    the same after `normalize_answer`. None for answers without the comparison."""
    spans = parse_verdict(prediction)
    if spans is None:
        return None
    claim, fact = map(normalize_answer, spans)
    if not claim or not fact:
        return None
    return "true" if claim == fact else "false"


def parse_choice(prediction: str, choices: dict[str, str]) -> str | None:
    """The chosen label from an answer: a leading label ("B", "B:", "(B)", "B."), "answer is B", or the text
    of exactly one choice (the earliest, then longest, when several occur). None when nothing parses."""
    labels = "".join(re.escape(label) for label in choices)
    if not labels:
        return None
    text = prediction.strip()
    patterns = (
        rf"^\(?([{labels}])\)?\s*(?:[:.)\]]|$)",  # B | B: | (B) | B. | B)
        rf"^\(?([{labels}])\)?\s*(?:\n|$)",
        rf"(?i:answer)\s*(?:(?i:is|would be|:))?\s*:?\s*(?:(?i:option|choice)\s*)?\(?([{labels}])\)?(?:[\s:.,)]|$)",
        rf"(?i:option|choice)\s*\(?([{labels}])\)?(?:[\s:.,)]|$)",
    )
    for pattern in patterns:
        m = re.search(pattern, text)
        if m:
            return m.group(1)
    norm = f" {normalize_answer(text)} "
    found = []
    for label, choice in choices.items():
        c = normalize_answer(choice)
        i = norm.find(f" {c} ") if c else -1
        if i >= 0:
            found.append((i, -len(c), label))
    if found:
        return min(found)[2]
    paren = set(re.findall(rf"\(([{labels}])\)", text))
    return paren.pop() if len(paren) == 1 else None


def accuracy(prediction: str, gold: str, choices: dict[str, str] | None = None) -> tuple[float, str | None]:
    """(score, parsed label): choice letters when `choices` are given, else the written verdict
    (`parse_true_false`). Unparseable -> (0, None)."""
    label = parse_choice(prediction, choices) if choices else parse_true_false(prediction)
    return float(label is not None and label == gold), label


# ------------------------------------------------------------------------------------------- ASQA
def str_em(prediction: str, qa_pairs: list[list[str]]) -> float:
    """Fraction of disambiguated questions with at least one short answer inside the prediction (ALCE)."""
    if not qa_pairs:
        return 0.0
    return sum(any(_contains(prediction, a) for a in answers) for answers in qa_pairs) / len(qa_pairs)


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (rouge-score, stemmed), in [0, 1]."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    pairs = [(p, r) for p, r in zip(predictions, references) if r.strip()]
    if not pairs:
        return 0.0
    return sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in pairs) / len(pairs)


def mauve(predictions: list[str], references: list[str]) -> float | None:
    """MAUVE (the optional `mauve-text` package and its featurizer model); None when unavailable."""
    try:
        import mauve as mauve_lib  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        out = mauve_lib.compute_mauve(p_text=predictions, q_text=references, device_id=-1, verbose=False)
    except Exception as e:  # the featurizer model is fetched from a hub: offline runs land here
        log.warning("MAUVE skipped: %s", e)
        return None
    return float(out.mauve)


# ------------------------------------------------------------------------------------------- tables
ROW_FIELDS = ("task", "method", "model", "n", "score", "fallbacks", "unparsed", "wall_s", "tokens_per_s")


def markdown_row(metrics: dict) -> str:
    """One results-table row of a metrics JSON."""
    fallbacks = sum(metrics.get("fallbacks", {}).values())
    cells = [metrics["task"], metrics["method"], Path(str(metrics["model"])).name, metrics["n"],
             f"{metrics['score']:.2f}", fallbacks, metrics.get("unparsed", 0), f"{metrics['wall_s']:.1f}",
             f"{metrics.get('tokens_per_s', 0):.1f}"]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def append_results_row(path: str | Path, metrics: dict) -> None:
    """Append a row to a markdown table, writing the header when the file is new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or not path.read_text().strip()
    with open(path, "a", encoding="utf-8") as f:
        if new:
            f.write("| " + " | ".join(ROW_FIELDS) + " |\n|" + "---|" * len(ROW_FIELDS) + "\n")
        f.write(markdown_row(metrics) + "\n")


def paper_table(runs: list[dict], version: str = paper.DEFAULT_VERSION) -> str:
    """The paper's layout: one row per method and model, one column per dataset (ASQA: str-em and ROUGE-L), with
    SMART's published numbers (Table 2, Llama-2-7B; `version` of the paper: smart.paper.VERSIONS) in the last row.
    `runs` are metrics JSON objects."""
    order = [t for t in TASKS if any(r["task"] == t for r in runs)]
    columns: list[tuple[str, str]] = []
    for t in order:
        columns += [(t, "str_em"), (t, "rouge_l")] if t == "asqa" else [(t, "score")]
    header = ["Method", "model"] + [paper.column_title(t, k) for t, k in columns]
    titles = paper.our_titles("table2")
    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        for model in dict.fromkeys(r["model"] for r in runs if r["method"] == method):
            by_task = {r["task"]: r for r in runs if r["method"] == method and r["model"] == model}
            cells = [f"{by_task[t][k]:.2f}" if t in by_task and k in by_task[t] else "-" for t, k in columns]
            rows.append([titles.get(method, method), Path(str(model)).name] + cells)
    published = [paper.published("table2", "smart", t, k, version) for t, k in columns]
    rows.append([f"SMART (published, {paper.VERSIONS[version]})", paper.BACKBONE]
                + ["-" if p is None else f"{p:.2f}" for p in published])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
