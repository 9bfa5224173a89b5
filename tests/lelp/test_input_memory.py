"""Student inputs for big transfer sets take the bounded-memory path (benchmarks/scale.py measures it).

The tokenizer sees a chunk of rows at a time and the rows are kept as packed numpy arrays, never
as one Python list per row; the batches are still exactly what one whole tokenizer call gives.
"""

from __future__ import annotations

import numpy as np
import torch

from lelp.students.static import StaticInputs
from lelp.students.transformer import TokenInputs
from lelp.teacher.loading import load_teacher
from tests.tiny import make_text_rows


def _texts(n: int) -> list[str]:
    return [row["text"] for row in make_text_rows(n, seed=3)]


def test_static_inputs_tokenize_in_chunks_and_keep_packed_ids(tiny_teacher_dir, monkeypatch):
    from lelp.students import static

    tokenizer = load_teacher(tiny_teacher_dir).tokenizer
    texts = _texts(30)
    calls: list[int] = []
    real = static.token_ids
    monkeypatch.setattr(static, "token_ids", lambda tok, t, *a: calls.append(len(t)) or real(tok, t, *a))
    inputs = StaticInputs(tokenizer, texts, None, max_length=8, chunk_rows=7)
    assert calls == [7, 7, 7, 7, 2]
    assert inputs.indices.dtype == torch.int32 and len(inputs) == 30
    want = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=8)["input_ids"]
    rows = torch.tensor([29, 0, 13, 6])
    batch = inputs.batch(rows, torch.device("cpu"))
    assert batch["ids"].dtype == torch.int64
    assert batch["ids"].tolist() == [t for i in rows.tolist() for t in want[i]]
    assert batch["offsets"].tolist() == np.cumsum([0] + [len(want[i]) for i in rows.tolist()[:-1]]).tolist()


def test_static_inputs_of_pairs_match_one_whole_call(tiny_teacher_dir):
    tokenizer = load_teacher(tiny_teacher_dir).tokenizer
    texts, pairs = _texts(10), _texts(10)[::-1]
    whole = StaticInputs(tokenizer, texts, pairs, max_length=12, chunk_rows=100)
    chunked = StaticInputs(tokenizer, texts, pairs, max_length=12, chunk_rows=3)
    assert torch.equal(whole.indptr, chunked.indptr) and torch.equal(whole.indices, chunked.indices)


def test_transformer_inputs_are_packed_arrays_padded_per_batch(tiny_teacher_dir):
    tokenizer = load_teacher(tiny_teacher_dir).tokenizer
    texts = _texts(12)
    inputs = TokenInputs(tokenizer, texts, None, max_length=10)
    assert len(inputs) == 12
    assert not hasattr(inputs, "rows")  # no Python list per row for the whole set
    assert all(isinstance(a, np.ndarray) and a.dtype == np.int32 for a in inputs.tokens.flat.values())
    rows = torch.tensor([3, 11, 0])
    batch = inputs.batch(rows, torch.device("cpu"))
    want = tokenizer([texts[i] for i in rows.tolist()], truncation=True, max_length=10, padding=True,
                     return_tensors="pt")
    assert set(batch) == set(want.keys())
    for key in want.keys():
        assert torch.equal(batch[key], want[key]), key


def test_fast_token_ids_are_the_transformers_calls(tiny_teacher_dir):
    """The Rust fast path (no offsets) gives exactly what ``tokenizer(...)`` gives, pairs and truncation included."""
    from lelp.students.static import _fast_encoder, token_ids

    tokenizer = load_teacher(tiny_teacher_dir).tokenizer
    texts = _texts(40) + ["", "   ", "ünïcödé façade naïve", "good " * 300, "a\tb\nc"]
    pairs = texts[::-1]
    assert _fast_encoder(tokenizer, 16) is not None  # the tiny teacher's tokenizer is a fast one
    for max_length in (4, 16, 512):
        want = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
        assert token_ids(tokenizer, texts, None, max_length) == want
        want = tokenizer(texts, pairs, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
        assert token_ids(tokenizer, texts, pairs, max_length) == want
    # the caller's tokenizer keeps its own settings (the fast path works on a copy)
    assert tokenizer("good " * 300, add_special_tokens=False)["input_ids"].__len__() == 300
