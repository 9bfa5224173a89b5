"""Hostile model directories for issue 14's tests: real files, built from the tiny BERT."""

from __future__ import annotations

import json
from pathlib import Path

#: A split regex with nested quantifiers: on a long run of one letter not followed by the end,
#: Oniguruma's backtracking passes its retry limit and the Rust ``tokenizers`` library panics
#: (``pyo3_runtime.PanicException: Onig: Regex search error: retry-limit-in-match over``).
PANIC_REGEX = "(a+)+$"
PANIC_TEXT = "a" * 40 + "!"


def make_panicking_tokenizer(model_dir: Path) -> Path:
    """Give ``model_dir``'s ``tokenizer.json`` the panicking pre-tokenizer (in place).

    ``tokenizer_class: PreTrainedTokenizerFast`` makes transformers use ``tokenizer.json``
    verbatim (a known class such as ``BertTokenizer`` rebuilds its pipeline from ``vocab.txt``).
    """
    path = Path(model_dir) / "tokenizer.json"
    spec = json.loads(path.read_text())
    spec["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": PANIC_REGEX}, "behavior": "Isolated",
                             "invert": False}
    path.write_text(json.dumps(spec))
    config_path = Path(model_dir) / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config))
    return path
