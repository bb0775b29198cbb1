"""Fetch open_clip's BPE vocabulary (the text tokenizer's only data file) into the cache, once.

    python -m videopolicy.models.fetch_bpe [CACHE_DIR]    # default ~/.cache/videopolicy ($VIDEOPOLICY_CACHE)

Needs PyPI (``pip download --no-deps open_clip_torch==3.3.0``); prints the file's path.
"""

import sys

from videopolicy.models.text import ensure_bpe_vocab

if __name__ == "__main__":
    print(ensure_bpe_vocab(sys.argv[1] if len(sys.argv) > 1 else None))
