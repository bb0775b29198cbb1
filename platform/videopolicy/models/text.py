"""Text conditioning: the task instruction as the pooled, projected CLIP text embedding.

The authors replace SVD's CLIP image embedding by OpenCLIP ViT-H-14's ``encode_text`` output (1024-d),
used as cross-attention context of length 1. Here: transformers ``CLIPTextModelWithProjection``
(``text_embeds``), and a tokenizer rebuilt offline and exactly from the BPE merges that the
``open_clip_torch`` wheel ships (ids equal open_clip's up to the end-of-text token; open_clip pads
with 0, we pad with EOT, which the causal, EOT-pooled text tower never sees).

Instructions are few, so ``TextEmbeddingCache`` stores one embedding per instruction: training and
evaluation then need no text encoder.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import os
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

import torch
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

from videopolicy.models.config import ModelConfig, TextConfig

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
OPEN_CLIP_WHEEL = "open_clip_torch==3.3.0"  # any version ships the same file; pinned for the checksum
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
SOT_ID, EOT_ID = 49406, 49407
NUM_MERGES = 49152 - 256 - 2  # open_clip keeps this many merge rules: vocab 512 bytes + merges + 2 = 49408


def default_cache_dir() -> Path:
    return Path(os.environ.get("VIDEOPOLICY_CACHE", "~/.cache/videopolicy")).expanduser()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_bpe_vocab(cache_dir: Optional[str | Path] = None, download: bool = True) -> Path:
    """Path of open_clip's ``bpe_simple_vocab_16e6.txt.gz``, fetching it once if needed.

    Looks at ``$VIDEOPOLICY_BPE``, the package's ``models/assets/``, then ``<cache_dir>/`` (default
    ``~/.cache/videopolicy``). Otherwise downloads the open_clip_torch wheel with
    ``pip download --no-deps`` (installing open_clip would pull torchvision), extracts this one file
    and checks its sha256.
    """
    candidates = []
    if os.environ.get("VIDEOPOLICY_BPE"):
        candidates.append(Path(os.environ["VIDEOPOLICY_BPE"]).expanduser())
    candidates.append(Path(__file__).parent / "assets" / BPE_FILE)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    candidates.append(cache / BPE_FILE)
    for path in candidates:
        if path.is_file():
            return path
    if not download:
        raise FileNotFoundError(f"{BPE_FILE} not found in {[str(c) for c in candidates]}; run "
                                f"`python -m videopolicy.models.fetch_bpe` to fetch it")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-q", "-d", tmp,
               OPEN_CLIP_WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("open_clip_torch-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download {OPEN_CLIP_WHEEL} for its BPE vocabulary "
                               f"({' '.join(cmd)}): {proc.stderr.strip()[-500:]}")
        extracted = Path(tmp) / BPE_FILE
        with zipfile.ZipFile(wheels[0]) as whl, whl.open(f"open_clip/{BPE_FILE}") as src, \
                open(extracted, "wb") as dst:
            shutil.copyfileobj(src, dst)
        if _sha256(extracted) != BPE_SHA256:
            raise RuntimeError(f"{BPE_FILE} from {wheels[0].name} has an unexpected sha256")
        target = cache / BPE_FILE
        part = cache / f"{BPE_FILE}.{os.getpid()}.part"
        shutil.move(str(extracted), part)
        os.replace(part, target)  # atomic: concurrent callers see all or nothing
    return target


def byte_symbols() -> list[str]:
    """CLIP's reversible byte -> unicode symbol table, in vocabulary order (printable bytes first)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(rest)}
    return [table[b] for b in printable + rest]


@lru_cache(maxsize=4)
def load_bpe(bpe_path: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """open_clip's vocabulary (49408 tokens) and merge rules from the BPE file."""
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
    return {t: i for i, t in enumerate(tokens)}, merges


def clean_text(text: str) -> str:
    """open_clip's 'lower' cleaning: ftfy (when installed), html-unescape twice, collapse spaces, lower."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # ftfy's default fixes that matter for instructions: NFC, straight quotes
        text = unicodedata.normalize("NFC", text)
        text = text.translate(str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'}))
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


class OpenClipTokenizer:
    """transformers ``CLIPTokenizer`` built from open_clip's BPE file; ``__call__`` -> ids (B, 77)."""

    def __init__(self, bpe_path: Optional[str | Path] = None, context_length: int = 77):
        path = str(bpe_path or ensure_bpe_vocab())
        vocab, merges = load_bpe(path)
        # transformers 5.x takes the objects; its v4 file keywords would silently give wrong ids
        self.hf = CLIPTokenizer(vocab=vocab, merges=list(merges))
        if self.hf.convert_tokens_to_ids([SOT, EOT]) != [SOT_ID, EOT_ID]:
            raise RuntimeError("tokenizer special tokens do not have open_clip's ids")
        self.context_length = context_length

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        # truncation keeps SOT + the first (context - 2) tokens + EOT, as open_clip does
        out = self.hf([clean_text(t) for t in texts], padding="max_length", truncation=True,
                      max_length=self.context_length, return_tensors="pt")
        return out["input_ids"]


def clip_text_config(cfg: TextConfig) -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=49408, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                          projection_dim=cfg.projection_dim, num_hidden_layers=cfg.num_layers,
                          num_attention_heads=cfg.num_heads, max_position_embeddings=77, hidden_act=cfg.hidden_act,
                          bos_token_id=SOT_ID, eos_token_id=EOT_ID, pad_token_id=EOT_ID)


class TextEncoder(nn.Module):
    """Instruction strings -> pooled, projected CLIP text embeddings (B, D). Frozen."""

    def __init__(self, model: CLIPTextModelWithProjection, tokenizer: OpenClipTokenizer):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer

    @property
    def dim(self) -> int:
        return self.model.config.projection_dim

    @torch.no_grad()
    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(texts).to(self.model.device)
        return self.model(input_ids=ids).text_embeds


def build_text_encoder(cfg: ModelConfig) -> TextEncoder:
    """Random init from the config, or ``from_pretrained`` (ViT-H: laion/CLIP-ViT-H-14-laion2B-s32B-b79K)."""
    cfg = cfg.resolve()
    t = cfg.text
    tokenizer = OpenClipTokenizer(t.bpe_path, t.context_length)
    if t.pretrained:
        from videopolicy.models.pretrained import from_pretrained_args

        path, kwargs = from_pretrained_args(t.pretrained, None, "text")
        model = CLIPTextModelWithProjection.from_pretrained(path, **kwargs)
        if model.config.projection_dim != t.projection_dim:
            raise ValueError(f"pretrained text model {t.pretrained!r} projects to {model.config.projection_dim}, "
                             f"the config says {t.projection_dim}")
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed + 1)
            model = CLIPTextModelWithProjection(clip_text_config(t))
    return TextEncoder(model, tokenizer)


class TextEmbeddingCache:
    """instruction -> embedding (D,), filled from a TextEncoder once; saved with the checkpoint."""

    def __init__(self, embeddings: Optional[dict[str, torch.Tensor]] = None):
        self.embeddings: dict[str, torch.Tensor] = dict(embeddings or {})

    def __contains__(self, text: str) -> bool:
        return text in self.embeddings

    def __len__(self) -> int:
        return len(self.embeddings)

    def add(self, texts: Iterable[str], encoder: TextEncoder, batch_size: int = 64) -> None:
        todo = sorted({t for t in texts if t not in self.embeddings})
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            for text, emb in zip(chunk, encoder(chunk).float().cpu()):
                self.embeddings[text] = emb

    def get(self, texts: list[str], encoder: Optional[TextEncoder] = None) -> torch.Tensor:
        """(B, D) float32 on CPU; unknown instructions need an encoder."""
        missing = [t for t in texts if t not in self.embeddings]
        if missing:
            if encoder is None:
                raise KeyError(f"no cached text embedding for {missing[:3]} and no text encoder")
            self.add(missing, encoder)
        return torch.stack([self.embeddings[t] for t in texts])

    def save(self, path: str | Path) -> None:
        torch.save({"embeddings": self.embeddings}, path)

    @classmethod
    def load(cls, path: str | Path) -> "TextEmbeddingCache":
        return cls(torch.load(path, map_location="cpu", weights_only=True)["embeddings"])
