"""Text conditioning: the offline tokenizer against open_clip's algorithm, the encoder and the cache."""

from __future__ import annotations

import gzip
import html

import pytest
import regex
import torch

from videopolicy.models.config import ModelConfig
from videopolicy.models.text import (
    EOT_ID,
    SOT_ID,
    OpenClipTokenizer,
    TextEmbeddingCache,
    build_text_encoder,
    clean_text,
    ensure_bpe_vocab,
)

# open_clip.tokenize("pick the apple from the counter and place it in the cabinet")[0][:14]
KNOWN = ("pick the apple from the counter and place it in the cabinet",
         [49406, 3142, 518, 3055, 633, 518, 7352, 537, 1445, 585, 530, 518, 9937, 49407])

SENTENCES = [
    KNOWN[0],
    "Open the microwave's door, then close it!",
    "  PICK   the\tcan (red) & put it   in the bin...  ",
    "turn on the stove; don't touch the 2nd burner -- it's hot?!",
    "naïve café: déjà vu with ünïcödé and emoji ☕🤖",
    "move the mug 10cm to the left, rotate 90° &amp; place it on the plate",
    "word " * 100,  # longer than the context: truncated, still ends with EOT
]


class ReferenceBPE:
    """An independent reading of open_clip's SimpleTokenizer algorithm (not its code, nor ours):
    clean (html-unescape twice, collapse whitespace, lowercase), split with CLIP's pattern, map UTF-8
    bytes to printable symbols, merge adjacent pairs by rank with '</w>' marking the word end, wrap
    in SOT/EOT, and truncate to 77 keeping EOT last."""

    PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)

    def __init__(self, path):
        keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
        rest = [b for b in range(256) if b not in keep]
        self.symbol = {b: chr(b) for b in keep} | {b: chr(256 + i) for i, b in enumerate(rest)}
        base = [self.symbol[b] for b in keep + rest]
        lines = gzip.open(path).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
        self.merges = [tuple(line.split()) for line in lines]
        self.rank = {pair: i for i, pair in enumerate(self.merges)}
        vocab = base + [s + "</w>" for s in base] + ["".join(pair) for pair in self.merges]
        self.ids = {token: i for i, token in enumerate(vocab)}

    def word(self, token: str) -> list[str]:
        parts = list(token[:-1]) + [token[-1] + "</w>"]
        while len(parts) > 1:
            best = min(self.rank.get(pair, len(self.merges)) for pair in zip(parts, parts[1:]))
            if best == len(self.merges):
                return parts
            a, b = self.merges[best]
            merged, i = [], 0
            while i < len(parts):  # every occurrence, left to right
                if parts[i] == a and i + 1 < len(parts) and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def __call__(self, text: str, context: int = 77) -> list[int]:
        text = " ".join(html.unescape(html.unescape(text)).split()).lower()
        ids = [SOT_ID]
        for token in self.PATTERN.findall(text):
            ids += [self.ids[p] for p in self.word("".join(self.symbol[b] for b in token.encode("utf-8")))]
        ids.append(EOT_ID)
        if len(ids) > context:
            ids = ids[:context - 1] + [EOT_ID]
        return ids


@pytest.fixture(scope="module")
def bpe_path():
    return ensure_bpe_vocab()  # fetched once per machine (`python -m videopolicy.models.fetch_bpe`)


def test_tokenizer_matches_open_clip_up_to_eot(bpe_path):
    tokenizer = OpenClipTokenizer(bpe_path)
    reference = ReferenceBPE(bpe_path)
    ids = tokenizer(SENTENCES)
    assert ids.shape == (len(SENTENCES), 77)
    assert ids[0, :14].tolist() == KNOWN[1]
    for row, text in zip(ids.tolist(), SENTENCES):
        want = reference(text)
        assert row[:len(want)] == want, text
        assert all(t == EOT_ID for t in row[len(want):])  # padding: EOT (open_clip pads with 0, never seen)
    assert len(tokenizer.hf.get_vocab()) == 49408


def test_clean_text_follows_open_clip():
    assert clean_text("  Hello&amp;amp;World \n\t Foo  ") == "hello&world foo"


def test_text_encoder_and_cache(bpe_path, tmp_path):
    cfg = ModelConfig(preset="tiny")
    encoder = build_text_encoder(cfg)
    texts = ["open the drawer", "close the drawer", "open the drawer"]
    emb = encoder(texts)
    assert emb.shape == (3, 64) and torch.allclose(emb[0], emb[2])
    assert not torch.allclose(emb[0], emb[1])
    cache = TextEmbeddingCache()
    cache.add(texts, encoder)
    assert len(cache) == 2
    cache.save(tmp_path / "cache.pt")
    loaded = TextEmbeddingCache.load(tmp_path / "cache.pt")
    assert torch.allclose(loaded.get(texts), emb, atol=1e-6)
    with pytest.raises(KeyError):
        loaded.get(["unseen instruction"])  # no encoder: no silent zeros


def test_pretrained_text_encoder_roundtrip(bpe_path, tmp_path):
    cfg = ModelConfig(preset="tiny")
    encoder = build_text_encoder(cfg)
    encoder.model.save_pretrained(tmp_path / "clip")
    cfg.text.pretrained = str(tmp_path / "clip")
    loaded = build_text_encoder(cfg)
    assert torch.allclose(loaded(["wipe the table"]), encoder(["wipe the table"]))
