"""The two scoring protocols every run is scored under, side by side in its metrics JSON (metrics.aggregate):

| task            | strict (ours; the headline `score`)               | paper (the reference scripts, quirks included) |
|-----------------|---------------------------------------------------|------------------------------------------------|
| PopQA, SQuAD    | normalized gold inside the normalized answer, on  | Self-RAG run_short_form.py + metrics.match: a  |
| (and qa)        | word boundaries (EM and token F1 beside it)       | raw, case-sensitive substring                  |
| PubHealth       | the verdict the answer states (parse_true_false)  | the same, gold "true"/"false" (an answer with  |
|                 |                                                   | "SUPPORTS"/"REFUTES" reads as "true"/"false")  |
| ARC-C           | the choice the answer names (parse_choice)        | the same, gold the answerKey as the file has it|
| ASQA            | str-em on word boundaries, ROUGE-L vs `answer`    | ALCE eval.py: str-em, ROUGE-Lsum (best of two  |
|                 |                                                   | annotations), MAUVE texts as ALCE builds them  |

Each protocol's numbers in a metrics JSON: `{"protocols": {name: {"score", "n", "ci95", ...}}}` (percentages; the
CI a seeded bootstrap of the per-item scores, smart.evaluation.stats). Per prediction row, `score` (strict) and `paper_score`.
"""
from __future__ import annotations

from smart.evaluation.stats import bootstrap_ci
from smart.evaluation.tasks import TASKS

PROTOCOLS = ("strict", "paper")
SCORE_FIELDS = {"strict": "score", "paper": "paper_score"}  # a prediction row's per-item score under each protocol
TITLES = {"strict": "Strict protocol (ours)", "paper": "Paper protocol (Self-RAG / ALCE scoring)"}
# the metrics JSON key of a paper-table column under the paper protocol, where it differs
PAPER_KEYS = {"rouge_l": "rouge_lsum"}


def metric_name(task: str, protocol: str = "strict") -> str:
    """The name of a task's main metric under a protocol, e.g. "accuracy" (strict PubHealth), "match" (paper)."""
    metric = TASKS[task].metric
    if metric == "asqa":
        return "str-em"
    return "match" if protocol == "paper" else metric


def row_scores(rows: list[dict], protocol: str = "strict") -> list[float] | None:
    """Prediction rows' per-item scores under `protocol` (SCORE_FIELDS); None without rows or where a row lacks the
    field (predictions written before the paper protocol)."""
    field = SCORE_FIELDS[protocol]
    return [r[field] for r in rows] if rows and all(field in r for r in rows) else None


def percent(scores: list[float]) -> float:
    """The mean of per-item scores in [0, 1], as a percentage (0 without scores)."""
    return 100 * sum(scores) / len(scores) if scores else 0.0


def summary(scores: list[float]) -> dict:
    """`score` (`percent`), `n` and `ci95` (bootstrap 95% CI of the mean, %; None without scores)."""
    ci = [100 * bound for bound in bootstrap_ci(scores)] if scores else None
    return {"score": percent(scores), "n": len(scores), "ci95": ci}


def numbers(metrics: dict, protocol: str = "strict") -> dict | None:
    """A metrics JSON's numbers under `protocol` (its `protocols` entry); a metrics JSON written before protocols
    has strict numbers only, at its top level. None where the protocol was not computed."""
    if protocol in metrics.get("protocols", {}):
        return metrics["protocols"][protocol]
    return metrics if protocol == "strict" and "score" in metrics else None


def value(metrics: dict, key: str, protocol: str = "strict") -> float | None:
    """One number of a metrics JSON under `protocol`: `score`, or a paper-table metric key (str_em, rouge_l, mauve;
    the paper protocol's ROUGE-L is ALCE's ROUGE-Lsum)."""
    found = numbers(metrics, protocol)
    if found is None:
        return None
    if protocol == "paper":
        key = PAPER_KEYS.get(key, key)
    return found.get(key)


def cell(score: float, ci: list[float] | tuple[float, float] | None, n: int | None) -> str:
    """`58.0 [44.0, 72.0] (n=50)`: a score (%), its 95% CI where known, and the items behind it where known."""
    interval = f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""
    items = f" (n={n})" if n is not None else ""
    return f"{score:.1f}{interval}{items}"
