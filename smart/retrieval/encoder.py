"""Dense text encoder: a transformer with mean pooling over the attention mask (Contriever's definition).

Works for `facebook/contriever-msmarco` (dot product on raw mean-pooled vectors) and sentence-transformers folders
such as the embedded all-MiniLM-L6-v2 (whose `modules.json` asks for L2 normalization, which is then applied).
"""
from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from smart.defaults import cpu_supports_bf16

log = logging.getLogger(__name__)

# Typographic punctuation folded to ASCII by --normalize_text (NFKC does the rest: ligatures, full-width forms).
_PUNCTUATION = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...", "\u00a0": " ", "\u200b": "",
})


def normalize_text(text: str) -> str:
    """Unicode NFKC plus ASCII quotes/dashes/ellipsis, as Contriever's --normalize_text intends."""
    return unicodedata.normalize("NFKC", text).translate(_PUNCTUATION)


def prepare_text(text: str, title: str | None = None, lowercase: bool = False, normalize: bool = False) -> str:
    """The string Contriever embeds: `title + " " + text` (title omitted when None), optionally lowercased/normalized."""
    if title is not None:
        text = title + " " + text
    if lowercase:
        text = text.lower()
    if normalize:
        text = normalize_text(text)
    return text


def add_text_and_dtype_arguments(parser, of: str) -> None:
    """The encoder flags shared by the embedding and retrieval CLIs (Contriever's names); `of`: what is encoded.

    Queries must be encoded with the options their passages were embedded with.
    """
    parser.add_argument("--lowercase", action="store_true", help=f"lowercase {of} before encoding")
    parser.add_argument("--normalize_text", action="store_true", help=f"fold unicode punctuation in {of} to ASCII")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                        help="encoder precision; auto = float16 on GPU (as Contriever), bfloat16 on CPUs with bf16 "
                             "instructions, else float32")
    parser.add_argument("--no_fp16", action="store_true", help="same as --dtype float32 (Contriever's flag)")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """"auto" -> "float16" on CUDA (Contriever's default), "bfloat16" on a CPU with bf16 matrix instructions (1.65x
    the float32 passages/s measured here, cosine to float32 >= 0.9999), else "float32"; other names unchanged."""
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "float16"
    return "bfloat16" if cpu_supports_bf16() else "float32"


def _wants_l2_normalize(model_dir: str) -> bool:
    """True when a sentence-transformers folder lists a Normalize module (all-MiniLM-L6-v2 does; Contriever not)."""
    modules = Path(model_dir) / "modules.json"
    if not modules.is_file():
        return False
    return any(m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text()))


class Encoder:
    """`Encoder(name).encode(texts) -> float32 [n, d]`: mean pooling, length-sorted batches, inference mode.

    dtype: "auto" (see resolve_dtype) or "float32"/"float16"/"bfloat16".
    normalize: "auto" follows the model folder's sentence-transformers config; True/False forces it.
    """

    def __init__(self, model_name_or_path: str, device: str | None = None, max_length: int = 256,
                 dtype: str = "auto", normalize: bool | str = "auto"):
        from transformers import AutoModel, AutoTokenizer

        self.device = device or default_device()
        torch_dtype = getattr(torch, resolve_dtype(dtype, self.device))
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        self.model = AutoModel.from_pretrained(model_name_or_path, dtype=torch_dtype).to(self.device).eval()
        self.max_length = max_length
        self.l2_normalize = _wants_l2_normalize(model_name_or_path) if normalize == "auto" else bool(normalize)
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def _forward(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1).float() / mask.sum(dim=1).float()
        if self.l2_normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled

    def encode(self, texts: list[str], batch_size: int = 64, sort_by_length: bool = True,
               progress: bool | tqdm = False) -> np.ndarray:
        """Embed `texts` (already prepared with `prepare_text`); returns float32 [n, d] in input order.

        With sort_by_length, batches hold texts of similar length (by characters, a cheap proxy for tokens), so
        little compute goes to padding; results are put back in the input order. `progress`: show a tqdm bar
        (passages/s), or pass an open bar to advance.
        """
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable") if sort_by_length else np.arange(len(texts))
        bar = progress if isinstance(progress, tqdm) else tqdm(total=len(texts), unit="passage", disable=not progress)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._forward([texts[i] for i in idx]).cpu().numpy()
            bar.update(len(idx))
        if bar is not progress:
            bar.close()
        return out
