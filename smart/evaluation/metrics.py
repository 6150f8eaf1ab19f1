"""The metrics of both scoring protocols (smart.evaluation.protocols), a task's per-example scores and per-run
numbers under both (score, aggregate), and the results table's markdown row per run (the paper's layout:
smart.evaluation.paper.paper_table).

- strict (ours): normalized match with exact match and token F1 beside it, one robustly parsed label for claims
  and choices (the label the model wrote), ASQA str-em on word boundaries / ROUGE-L / optional MAUVE.
- paper: the reference scripts, quirks included: Self-RAG's retrieval_lm (run_short_form.py, metrics.py) for the
  short-form tasks, ALCE's eval.py for ASQA. Our own code following their behaviour, pinned by tests/test_protocols.py.

Scores are in [0, 1] per example; reported numbers are percentages.
"""
from __future__ import annotations

import logging
import re
import string
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Callable

from smart.evaluation import protocols
from smart.evaluation.tasks import Example, Task
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


def exact_match(prediction: str, golds: list[str]) -> float:
    """1.0 when the normalized prediction equals a normalized gold (SQuAD's EM)."""
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in golds))


def token_f1(prediction: str, golds: list[str]) -> float:
    """The best F1 over golds of the normalized prediction's tokens against the gold's (SQuAD's F1); 0 without a
    common token."""
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        expected = normalize_answer(gold).split()
        common = sum((Counter(predicted) & Counter(expected)).values())
        if common:
            precision, recall = common / len(predicted), common / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


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


def mauve(p_text: list[str], q_text: list[str], **settings) -> float | None:
    """MAUVE of two text lists (the optional `mauve-text` package and its featurizer model, on the CPU: a run's
    model may still hold the GPU), `settings` passed on; None when unavailable."""
    try:
        import mauve as mauve_lib  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        out = mauve_lib.compute_mauve(p_text=p_text, q_text=q_text, device_id=-1, verbose=False, **settings)
    except Exception as e:  # the featurizer model is fetched from a hub: offline runs land here
        log.warning("MAUVE skipped: %s", e)
        return None
    return float(out.mauve)


# ------------------------------------------------------------------------------ paper protocol: Self-RAG
# retrieval_lm/utils.py `control_tokens`, then what run_short_form.py's postprocess_answer_option_conditioned deletes
_SELFRAG_DELETED = (("[Fully supported]", "[Partially supported]", "[No support / Contradictory]", "[No Retrieval]",
                     "[Retrieval]", "[Irrelevant]", "[Relevant]", "<paragraph>", "</paragraph>")
                    + tuple(f"[Utility:{i}]" for i in range(1, 6)) + ("</s>", "\n", "<|endoftext|>"))


def selfrag_prediction(answer: str) -> str:
    """An answer as Self-RAG's run_short_form.py scores it: its control tokens, "</s>", every newline (deleted,
    not replaced: the lines run together) and "<|endoftext|>" removed in that order; one leading "#" or ":" dropped;
    then, on every task (`--metric match`), an answer containing "SUPPORTS" becomes "true", else one containing
    "REFUTES" becomes "false" (case-sensitive). Nothing is stripped or lowercased."""
    for token in _SELFRAG_DELETED:
        answer = answer.replace(token, "")
    if answer[:1] in ("#", ":"):
        answer = answer[1:]
    if "SUPPORTS" in answer:
        return "true"
    return "false" if "REFUTES" in answer else answer


def selfrag_match(answer: str, golds: list[str]) -> float:
    """Self-RAG's retrieval_lm/metrics.py `match` on `selfrag_prediction`: 1.0 when any gold occurs verbatim in it
    (a raw, case-sensitive substring: "true" inside "untrue" counts, "True." does not; an empty gold always counts).
    Self-RAG's run_short_form.py fails on an empty answer; here it scores 0."""
    prediction = selfrag_prediction(answer)
    return float(any(gold in prediction for gold in golds))


# ------------------------------------------------------------------------------ paper protocol: ALCE (ASQA)
def alce_remove_citations(text: str) -> str:
    """ALCE utils.remove_citations: "[" with its digits deleted (with one space before it, if any), then every " |"
    and every "]" ("Paris[1]." -> "Paris.", "Paris [1][2]." -> "Paris.")."""
    return re.sub(r" ?\[\d+", "", text).replace(" |", "").replace("]", "")


def alce_output(answer: str) -> str:
    """An answer as ALCE's eval.py scores it (str-em, ROUGE, MAUVE): stripped, its first line only, "<|im_end|>"
    deleted, citations removed (`alce_remove_citations`)."""
    return alce_remove_citations(answer.strip().split("\n")[0].replace("<|im_end|>", ""))


def alce_str_em(answer: str, qa_pairs: list[list[str]]) -> float:
    """ALCE's str-em of one answer: the fraction of disambiguated questions with a short answer inside
    `alce_output` after SQuAD normalization (a plain substring: "1" inside "1990" counts)."""
    if not qa_pairs:
        return 0.0
    output = normalize_answer(alce_output(answer))
    return sum(any(normalize_answer(a) in output for a in answers) for answers in qa_pairs) / len(qa_pairs)


@lru_cache(maxsize=1)
def sentence_splitter() -> tuple[str, Callable[[str], list[str]]]:
    """("punkt", nltk's pretrained English Punkt: ALCE's `sent_tokenize`) where its data is installed, else
    ("punkt-untrained", the same rules without the learnt abbreviations, so "Mr." may end a sentence), with a
    warning: ROUGE-Lsum may then differ slightly from ALCE's."""
    from nltk import sent_tokenize
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    try:
        sent_tokenize("Data check.")
        return "punkt", sent_tokenize
    except LookupError:
        log.warning("nltk's punkt_tab data is not installed: ROUGE-Lsum splits sentences with untrained Punkt")
        return "punkt-untrained", PunktSentenceTokenizer().tokenize


def alce_sentences(text: str) -> str:
    """Text as ALCE feeds ROUGE-Lsum: lowercased, one sentence per line."""
    return "\n".join(sentence_splitter()[1](text.lower()))


def alce_rouge_lsum(answer: str, references: list[str]) -> float:
    """ALCE's ROUGE-Lsum F1 of one answer (`alce_output`), stemmed, sentence-split (`alce_sentences`), the best over
    `references` (ASQA's two annotations' long answers); 0 without a reference. ALCE reports the bootstrap median
    (rouge-score's BootstrapAggregator, unseeded) of these; the mean of them is its expectation."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)
    hypothesis = alce_sentences(alce_output(answer))
    return max((scorer.score(alce_sentences(r), hypothesis)["rougeLsum"].fmeasure for r in references), default=0.0)


def alce_mauve_text(question: str, text: str) -> str:
    """A MAUVE text as ALCE's compute_mauve builds it: the question, a space and the text stripped, cut to its first
    100 whitespace-separated words, trailing punctuation removed."""
    return " ".join(f"{question} {text.strip()}".split()[:100]).rstrip(string.punctuation)


ALCE_MAUVE_SETTINGS = {"max_text_length": 512, "batch_size": 8, "featurize_model_name": "gpt2-large"}


# ------------------------------------------------------------------------------------------- results table
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


# ------------------------------------------------------------------------------------------- per task
def score(task: Task, ex: Example, answer: str) -> dict:
    """Per-example scores in [0, 1] under both protocols (smart.evaluation.protocols): `score` the strict one (match, accuracy,
    ASQA str-em), with the parsed `label` for accuracy tasks (None = unparseable, counted as wrong) and exact match
    `em` and token `f1` beside match; `paper_score` the paper protocol's (Self-RAG's match; ASQA: ALCE's str-em)."""
    if task.metric == "asqa":
        return {"score": str_em(answer, ex.qa_pairs), "paper_score": alce_str_em(answer, ex.qa_pairs)}
    # Self-RAG compares ARC's answerKey as the file writes it, PubHealth's gold as true/false
    paper = {"paper_score": selfrag_match(answer, [ex.answer_key] if ex.choices else ex.golds)}
    if task.metric == "accuracy":
        value, label = accuracy(answer, ex.golds[0], ex.choices or None)
        return {"score": value, "label": label, **paper}
    return {"score": match(answer, ex.golds), "em": exact_match(answer, ex.golds),
            "f1": token_f1(answer, ex.golds), **paper}


def gold_passages(task: Task, ex: Example) -> list[int] | None:
    """1-based indices of the example's passages that hold a gold answer (for ARC, the gold choice's text); None
    when the gold is a label with no text to look for (PubHealth)."""
    if task.name == "pubhealth":
        return None
    golds = [ex.choices[ex.golds[0]]] if ex.choices else ex.golds
    return [i for i, p in enumerate(ex.passages, start=1) if match(p.text, golds)]


def _asqa(examples: list[Example], answers: list[str]) -> tuple[dict, dict]:
    """ASQA's long-form numbers (%): strict ROUGE-L against `answer`; paper ROUGE-Lsum (ALCE: the best of the two
    annotations' long answers, else `answer`; with the `sentence_splitter` it used); MAUVE of each where computable
    (the paper's: ALCE's texts and settings)."""
    references = [ex.long_answer for ex in examples]
    strict = {"rouge_l": 100 * rouge_l(answers, references)}
    lsum = [alce_rouge_lsum(a, ex.annotations or [ex.long_answer]) for ex, a in zip(examples, answers)]
    paper = {"rouge_lsum": protocols.percent(lsum), "sentence_splitter": sentence_splitter()[0]}
    strict_mauve = mauve(answers, references)
    human = [alce_mauve_text(ex.question, ex.long_answer) for ex in examples]
    model = [alce_mauve_text(ex.question, alce_output(a)) for ex, a in zip(examples, answers)]
    paper_mauve = mauve(human, model, **ALCE_MAUVE_SETTINGS)
    for numbers, value in ((strict, strict_mauve), (paper, paper_mauve)):
        if value is not None:
            numbers["mauve"] = 100 * value
    return strict, paper


def aggregate(task: Task, examples: list[Example], rows: list[dict]) -> dict:
    """Dataset-level numbers (percentages) of prediction rows (one per example, in order; each needs only its
    `answer`: every score is recomputed from it, so rescoring a run's predictions gives the numbers the run wrote).

    `protocols`: per protocol (smart.evaluation.protocols) `score`, `n`, `ci95` and its other numbers (strict: `em` and `f1`,
    or `unparsed`; ASQA: `str_em`, `rouge_l` / `rouge_lsum`, `mauve` where computable). The strict numbers also
    stay at the top level (`score`, `n`, `unparsed`, `str_em`, `rouge_l`, `mauve`), as before the protocols."""
    if len(rows) != len(examples):
        raise ValueError(f"{len(rows)} prediction rows for {len(examples)} examples")
    answers = [r["answer"] for r in rows]
    scored = [score(task, ex, answer) for ex, answer in zip(examples, answers)]
    strict = protocols.summary([s["score"] for s in scored])
    paper = protocols.summary([s["paper_score"] for s in scored])
    if task.metric == "accuracy":
        strict["unparsed"] = sum(s["label"] is None for s in scored)
    elif task.metric == "match":
        strict.update({key: protocols.percent([s[key] for s in scored]) for key in ("em", "f1")})
    else:
        more_strict, more_paper = _asqa(examples, answers)
        strict.update(str_em=strict["score"], **more_strict)
        paper.update(str_em=paper["score"], **more_paper)
    top = {k: v for k, v in strict.items() if k not in ("ci95", "em", "f1")}
    return {**top, "protocols": {"strict": strict, "paper": paper}}
