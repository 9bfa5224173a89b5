"""Static student: a token-embedding table distilled from the teacher's own encoder, + an MLP.

The table is model2vec's recipe (Tulkens & van Dongen, 2024): every vocabulary token goes
through the encoder on its own (``[CLS] token [SEP]``, mean-pooled), the vectors are reduced
by PCA to a few hundred dimensions and weighted by a Zipf estimate of token frequency (SIF).
A sentence is the mean of its tokens' rows; an MLP head gives the S*C outputs, and the table is
fine-tuned end to end with the distillation targets (sparse gradients: a batch touches a few
hundred of its ~30k rows). model2vec's own ``distill()`` pins transformers < 5.4, so we call
its building blocks (``create_embeddings``, ``apply_pca``, ``compute_weights``) directly.

Distilling costs one encoder pass over the vocabulary; the table is cached on disk keyed by
the encoder's hash and the recipe. The forward is plain (token ids + offsets in, S*C logits
out) so it exports like the n-gram student. The artifact is also a model2vec ``StaticModel``
directory (``model.safetensors`` holds the table as ``embeddings``, beside ``tokenizer.json``
and a model2vec ``config.json``): ``StaticModel.from_pretrained(dir)`` gives the fine-tuned
sentence embeddings the head reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lelp.errors import ConfigError
from lelp.progress import Progress, check_cancelled, report
from lelp.students.base import Student, csr_rows
from lelp.students.kind import StudentKind

TABLE_KEY = "embeddings"  # the name model2vec's StaticModel reads
RECIPE_VERSION = 1
_TABLE_OPTIONS = ("pca_dims", "sif_coefficient")


def _fast_encoder(tokenizer, max_length: int):
    """A private copy of a fast tokenizer's Rust backend, truncating at ``max_length``, never padding.

    ``encode_batch_fast`` (tokenizers >= 0.20) skips the character offsets that the
    ``transformers`` call computes for every token: the token ids of a batch of short
    sentences come about 2x faster, and tokenising is most of what a table student costs
    per sentence (``benchmarks/README.md``). The copy keeps the caller's tokenizer untouched.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    cache = tokenizer.__dict__.setdefault("_lelp_fast_encoders", {})
    if max_length not in cache:
        from tokenizers import Tokenizer

        copy = Tokenizer.from_str(backend.to_str())
        copy.no_padding()
        copy.enable_truncation(max_length, strategy="longest_first")
        cache[max_length] = copy
    return cache[max_length]


def token_ids(tokenizer, texts: Sequence[str], text_pairs: Sequence[str] | None, max_length: int) -> list[list[int]]:
    """Each row's token ids, no special tokens, truncated to ``max_length``: what
    ``tokenizer(texts, text_pairs, add_special_tokens=False, truncation=True, max_length=...)`` gives."""
    encoder = _fast_encoder(tokenizer, max_length)
    if encoder is None:  # a slow (Python) tokenizer
        return tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None,
                         add_special_tokens=False, truncation=True, max_length=max_length,
                         return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    inputs = list(zip(texts, text_pairs, strict=True)) if text_pairs is not None else list(texts)
    return [e.ids for e in encoder.encode_batch_fast(inputs, add_special_tokens=False)]


class StaticInputs:
    """Token ids per row (no special tokens) as one CSR array; a batch is (ids, offsets).

    Tokenised ``chunk_rows`` rows at a time and packed into int32 at once: the tokenizer's
    Python lists and Rust encodings for a whole million-row set took ~3.5 GB at their peak,
    a chunk's take a few MB (``benchmarks/scale.py``). Ids become int64 per batch.
    """

    def __init__(self, tokenizer, texts: Sequence[str], text_pairs: Sequence[str] | None, max_length: int,
                 chunk_rows: int = 4096):
        parts, lengths = [], []
        for start in range(0, len(texts), chunk_rows):
            stop = start + chunk_rows
            encoded = token_ids(tokenizer, texts[start:stop], text_pairs[start:stop] if text_pairs is not None
                                else None, max_length)
            lengths.append(np.fromiter((len(row) for row in encoded), dtype=np.int64, count=len(encoded)))
            parts.append(np.fromiter((t for row in encoded for t in row), dtype=np.int32,
                                     count=int(lengths[-1].sum())))
        lengths_all = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        self.indptr = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths_all)]).astype(np.int64))
        self.indices = torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32))

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def batch(self, indices: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        positions, offsets = csr_rows(self.indptr, indices)
        return {"ids": self.indices[positions].to(device=device, dtype=torch.int64), "offsets": offsets.to(device)}


class StaticStudent(Student):
    kind = "static"
    sparse_parameter_names = ("embeddings.weight",)

    def __init__(self, num_outputs: int, *, vocab_size: int, embedding_dim: int, hidden: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        self.num_outputs, self.vocab_size, self.embedding_dim = num_outputs, vocab_size, embedding_dim
        self.hidden_size, self.dropout = hidden, dropout
        self.embeddings = nn.EmbeddingBag(vocab_size, embedding_dim, mode="mean", sparse=True)
        self.norm = nn.LayerNorm(embedding_dim)
        from lelp.students.base import mlp_head

        self.head = mlp_head(embedding_dim, hidden, num_outputs, dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.embeddings(batch["ids"], batch["offsets"])
        hidden = self.head[:-1](self.norm(pooled))
        return self.head[-1](hidden), hidden

    def spec(self) -> dict:
        return {"num_outputs": self.num_outputs, "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim,
                "hidden": self.hidden_size, "dropout": self.dropout}


def _special_ids(tokenizer) -> tuple[list[int], list[int]]:
    """What wraps one token the way the encoder saw sentences: ``[CLS]`` before, ``[SEP]`` after."""
    before = [tokenizer.cls_token_id] if tokenizer.cls_token_id is not None else []
    after = [tokenizer.sep_token_id] if tokenizer.sep_token_id is not None else []
    return before, after


def distill_table(encoder: nn.Module, tokenizer, *, pca_dims: int = 256, sif_coefficient: float = 1e-4,
                  device: torch.device = torch.device("cpu"), cache_file: Path | None = None, progress=None,
                  should_cancel=None, chunk: int = 4096) -> np.ndarray:
    """The (vocab, dims) table of model2vec's recipe for ``encoder``; cached in ``cache_file``."""
    if cache_file is not None and cache_file.exists():
        return np.load(cache_file)
    from model2vec.distill.inference import PoolingMode, apply_pca, compute_weights, create_embeddings

    vocab = len(tokenizer)
    before, after = _special_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    parts = []
    for first in range(0, vocab, chunk):
        check_cancelled(should_cancel)
        report(progress, Progress(stage="extract", step=first, total_steps=vocab,
                                  message=f"static table: {first}/{vocab} vocabulary tokens through the encoder"))
        ids = [[*before, i, *after] for i in range(first, min(first + chunk, vocab))]
        parts.append(create_embeddings(encoder, ids, device=str(device), pad_token_id=pad,
                                       pooling=PoolingMode.MEAN))
    report(progress, Progress(stage="extract", step=vocab, total_steps=vocab, message="static table: PCA"))
    table = apply_pca(np.concatenate(parts).astype(np.float64), pca_dims)
    table = (table * compute_weights(len(table), sif_coefficient=sif_coefficient)[:, None]).astype(np.float32)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, table)
        os.replace(tmp, cache_file)
    return table


class StaticKind(StudentKind):
    student_class = StaticStudent
    name = "static"
    #: how a kind built on this table cuts its batches (``lelp.students.cnn`` pads them)
    inputs_class = StaticInputs

    def inputs(self, texts, text_pairs, dataset_sha256):
        return self.inputs_class(self.ctx.tokenizer, texts, text_pairs, self.ctx.max_length)

    def _encoder(self) -> tuple[nn.Module, str]:
        """The encoder whose vocabulary the table covers, and its hash (the cache key)."""
        ctx = self.ctx
        if ctx.student_base:
            from lelp.teacher.features import load_encoder
            from lelp.teacher.loading import directory_sha256

            model, _tok = load_encoder(ctx.student_base)
            return model, directory_sha256(ctx.student_base)
        return ctx.teacher.model.base_model, ctx.teacher.info.sha256

    def table(self) -> np.ndarray:
        opts = {k: self.ctx.options[k] for k in _TABLE_OPTIONS if k in self.ctx.options}
        pca_dims, sif = int(opts.get("pca_dims", 256)), float(opts.get("sif_coefficient", 1e-4))
        encoder, encoder_sha = self._encoder()
        cache_file = None
        if self.ctx.cache_dir is not None:
            key = hashlib.sha256(json.dumps([RECIPE_VERSION, encoder_sha, pca_dims, sif,
                                             len(self.ctx.tokenizer)]).encode()).hexdigest()[:32]
            cache_file = Path(self.ctx.cache_dir) / "static_tables" / f"{key}.npy"
        return distill_table(encoder, self.ctx.tokenizer, pca_dims=pca_dims, sif_coefficient=sif,
                             device=self.ctx.device, cache_file=cache_file, progress=self.ctx.progress,
                             should_cancel=self.ctx.should_cancel)

    def build(self, num_outputs, labels, subclasses):
        if not hasattr(self, "_table"):
            self._table = self.table()
        opts = {k: v for k, v in self.ctx.options.items() if k not in _TABLE_OPTIONS}
        try:
            student = self.student_class(num_outputs, vocab_size=self._table.shape[0],
                                         embedding_dim=self._table.shape[1], **opts)
        except TypeError as exc:
            raise ConfigError(f"bad student option for {self.name}: {exc}", param="student_options") from None
        with torch.no_grad():
            student.embeddings.weight.copy_(torch.from_numpy(self._table))
        return student

    def save(self, student, out: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}
        state[TABLE_KEY] = state.pop("embeddings.weight")
        save_file(state, str(out / "model.safetensors"))
        self.ctx.tokenizer.save_pretrained(out)
        (out / "config.json").write_text(json.dumps({  # model2vec's StaticModel config
            "model_type": "model2vec", "architectures": ["StaticModel"], "hidden_dim": student.embedding_dim,
            "apply_pca": student.embedding_dim, "normalize": False, "seq_length": self.ctx.max_length,
            "tokenizer_name": None}, indent=2))

    @classmethod
    def load(cls, path: Path, manifest: dict):
        from safetensors.torch import load_file
        from transformers import PreTrainedTokenizerFast

        from lelp.artifacts import StudentPredictor

        state = load_file(str(path / "model.safetensors"))
        state["embeddings.weight"] = state.pop(TABLE_KEY)
        student = cls.student_class(**manifest["spec"])
        student.load_state_dict(state)
        # tokenizer.json alone: the same fast tokenizer the job used (special tokens are never
        # added), without AutoTokenizer reading the model2vec config.json beside it
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))
        max_length = int(manifest.get("max_length", 128))
        predictor = StudentPredictor(student, manifest,
                                     lambda texts, pairs: cls.inputs_class(tokenizer, texts, pairs, max_length))
        predictor.tokenizer, predictor.max_length = tokenizer, max_length  # what ONNX export ships beside the graph
        return predictor

    readme_note = """
This directory is also a model2vec `StaticModel`: `StaticModel.from_pretrained(dir)` gives the
fine-tuned sentence embeddings (mean of token rows) that the head reads; the head's weights
(`norm.*`, `head.*` in model.safetensors) map them to the S*C outputs.
"""
