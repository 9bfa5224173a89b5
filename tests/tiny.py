"""Tiny random teachers and synthetic datasets for tests: nothing is downloaded."""

from __future__ import annotations

import csv
import random
from pathlib import Path

POSITIVE = ["good", "great", "fine", "lovely", "superb", "happy", "bright", "warm"]
NEGATIVE = ["bad", "awful", "poor", "dull", "sad", "grim", "cold", "weak"]
NEUTRAL = ["the", "a", "movie", "plot", "actor", "scene", "story", "film", "was", "is", "very", "quite"]
SPORTS = ["match", "goal", "team", "coach", "league"]
WORDS = POSITIVE + NEGATIVE + NEUTRAL + SPORTS


def make_tiny_teacher(
    out_dir: str | Path,
    labels: tuple[str, ...] = ("negative", "positive"),
    *,
    hidden_size: int = 32,
    layers: int = 2,
    seed: int = 0,
    safetensors: bool = True,
) -> Path:
    """Write a random 2-layer BERT sequence classifier with a word-level vocabulary."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *(f"w{i}" for i in range(40))]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers >= 5 ignores vocab_file here (every word became [UNK]); pass the vocabulary itself
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(out)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=128,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(out, safe_serialization=safetensors)
    if not safetensors:
        # transformers >= 5 always writes safetensors; write the legacy pickle format by hand.
        for f in out.glob("*.safetensors"):
            f.unlink()
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    return out


def make_text_rows(n: int, labels: tuple[str, ...] = ("negative", "positive"), seed: int = 0) -> list[dict]:
    """Sentences whose label shows in their words, so a student can learn something."""
    rng = random.Random(seed)
    pools = [NEGATIVE, POSITIVE, SPORTS, NEUTRAL]
    rows = []
    for i in range(n):
        k = i % len(labels)
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(3, 9))]
        words += [rng.choice(pools[k % len(pools)]) for _ in range(rng.randint(1, 3))]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": labels[k]})
    return rows


def write_csv(path: str | Path, rows: list[dict], columns: tuple[str, ...] = ("text", "label")) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def make_tiny_encoder(out_dir: str | Path, *, hidden_size: int = 24, seed: int = 1) -> Path:
    """A random 1-layer BERT encoder (``BertModel``: no classification head), a student base."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True).save_pretrained(out)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=hidden_size * 2, max_position_embeddings=128)
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(out, safe_serialization=True)
    return out
