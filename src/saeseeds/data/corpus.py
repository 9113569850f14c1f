"""Corpus → token chunks: read documents, tokenise, pack into fixed-length chunks, shuffle once, split off eval.

Packing follows sparsify/SAELens: documents are tokenised without special tokens and concatenated with a
separator token (EOS, or SEP for encoders) between them; each chunk starts with BOS (or CLS) when the
tokenizer has one. The chunk order is fixed by one shuffle seed, so every run sees the same tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from saeseeds.config import LmConfig
from saeseeds.data.default_model import DEFAULT_CORPUS_NAME, default_corpus_documents
from saeseeds.errors import DataError
from saeseeds.hashing import sha256_hex, tensor_bytes

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl", ".json")


class Corpus(NamedTuple):
    """Documents in their source order and a name saying where they came from."""

    documents: list[str]
    name: str


class SpecialTokens(NamedTuple):
    """Token ids the packer inserts: `prefix` starts every chunk, `separator` ends every document."""

    prefix: int | None
    separator: int | None
    all_ids: tuple[int, ...]
    """Every special id of the tokenizer (including padding), excluded from activations."""


class TokenChunks(NamedTuple):
    """Packed, shuffled token chunks: `train` [n_train, ctx_len] and held-out `eval` [n_eval, ctx_len]."""

    train: torch.Tensor
    eval: torch.Tensor
    special_ids: tuple[int, ...]
    corpus: str
    fingerprint: str
    """sha256 over the int64 bytes of train then eval, in order."""


# --------------------------------------------------------------------------------------------
# reading documents


def _read_text_file(path: Path, text_column: str) -> list[str]:
    """One document per .txt/.md file; one per JSON line (its `text_column`) for .jsonl/.json."""
    if path.suffix in TEXT_SUFFIXES:
        return [path.read_text(encoding="utf-8", errors="replace")]
    documents = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{line_no}: not valid JSON ({err.msg})") from err
            if not isinstance(record, dict) or text_column not in record:
                raise DataError(f"{path}:{line_no}: no field {text_column!r} (set lm.text_column)")
            documents.append(str(record[text_column]))
    return documents


def _local_files(paths: Sequence[Path]) -> list[Path]:
    """Expand directories to their text/JSONL files, sorted, so the order never depends on the file system."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES + JSONL_SUFFIXES)
            files.extend(found)
        else:
            files.append(path)
    return files


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and (
        (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()
    )


def _hf_documents(cfg: LmConfig) -> list[str]:
    """Documents of a HF dataset: a `save_to_disk` directory, or a name already in the local HF cache."""
    import datasets

    path = Path(cfg.dataset)
    try:
        if _is_saved_dataset(path):
            dataset: Any = datasets.load_from_disk(str(path))
            if isinstance(dataset, datasets.DatasetDict):
                if cfg.dataset_split not in dataset:
                    raise DataError(
                        f"{path}: no split {cfg.dataset_split!r}; splits: {', '.join(dataset)}"
                    )
                dataset = dataset[cfg.dataset_split]
        else:
            dataset = datasets.load_dataset(
                cfg.dataset, cfg.dataset_config or None, split=cfg.dataset_split
            )
    except DataError:
        raise
    except Exception as err:  # datasets raises many types (offline, missing, bad config)
        raise DataError(f"lm.dataset {cfg.dataset!r}: cannot load it ({type(err).__name__}: {err})") from err
    if cfg.text_column not in dataset.column_names:
        raise DataError(
            f"lm.dataset {cfg.dataset!r}: no column {cfg.text_column!r}; columns: {', '.join(dataset.column_names)}"
        )
    if cfg.max_documents:
        dataset = dataset.select(range(min(cfg.max_documents, len(dataset))))
    return [str(text) for text in dataset[cfg.text_column]]


def load_corpus(cfg: LmConfig) -> Corpus:
    """Documents named by `cfg.dataset`: the embedded default, local text/JSONL files, or a HF dataset."""
    if not cfg.dataset or cfg.dataset == "default":
        documents, name = default_corpus_documents(), DEFAULT_CORPUS_NAME
    else:
        parts = [Path(p.strip()) for p in cfg.dataset.split(",") if p.strip()]
        local = [p for p in parts if p.exists() and not _is_saved_dataset(p)]
        if local and len(local) == len(parts):
            documents = []
            for path in _local_files(local):
                documents.extend(_read_text_file(path, cfg.text_column))
            name = cfg.dataset
        elif len(parts) == 1:
            documents, name = _hf_documents(cfg), cfg.dataset
        else:
            missing = [str(p) for p in parts if not p.exists()]
            raise DataError(f"lm.dataset: file(s) not found: {', '.join(missing)}")
    if cfg.max_documents:
        documents = documents[: cfg.max_documents]
    documents = [d for d in documents if d.strip()]
    if not documents:
        raise DataError(f"lm.dataset {cfg.dataset or 'default'!r}: no non-empty documents")
    return Corpus(documents, name)


# --------------------------------------------------------------------------------------------
# tokenising and packing


def special_tokens(tokenizer: Any) -> SpecialTokens:
    """Chunk prefix (BOS, else CLS), document separator (EOS, else SEP, else BOS) and all special ids."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    cls, sep = getattr(tokenizer, "cls_token_id", None), getattr(tokenizer, "sep_token_id", None)
    prefix = bos if bos is not None else cls
    separator = eos if eos is not None else (sep if sep is not None else bos)
    structural = {i for i in (bos, eos, cls, sep, tokenizer.pad_token_id) if i is not None}
    ids = set(getattr(tokenizer, "all_special_ids", []) or []) | structural
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk not in structural:
        ids.discard(unk)  # an unknown character is still text
    return SpecialTokens(prefix, separator, tuple(sorted(ids)))


def pack_documents(
    token_lists: Iterable[Sequence[int]], ctx_len: int, *, prefix: int | None, separator: int | None
) -> torch.Tensor:
    """Concatenate documents (each followed by `separator`) and cut into chunks [n, ctx_len], each led by `prefix`.

    The trailing partial chunk is dropped, as sparsify does.
    """
    body = ctx_len - (1 if prefix is not None else 0)
    if body < 1:
        raise DataError(f"lm.ctx_len = {ctx_len} is too small (needs at least 2 with a BOS/CLS prefix)")
    stream: list[int] = []
    for tokens in token_lists:
        stream.extend(tokens)
        if separator is not None:
            stream.append(separator)
    n_chunks = len(stream) // body
    if n_chunks == 0:
        return torch.empty(0, ctx_len, dtype=torch.int64)
    chunks = torch.tensor(stream[: n_chunks * body], dtype=torch.int64).view(n_chunks, body)
    if prefix is not None:
        chunks = torch.cat([torch.full((n_chunks, 1), prefix, dtype=torch.int64), chunks], dim=1)
    return chunks


def tokenize_documents(tokenizer: Any, documents: Sequence[str], batch: int = 512) -> list[list[int]]:
    """Token ids of every document, without special tokens (the packer adds them)."""
    out: list[list[int]] = []
    for start in range(0, len(documents), batch):
        encoded = tokenizer(
            list(documents[start : start + batch]), add_special_tokens=False, verbose=False
        )
        out.extend(encoded["input_ids"])
    return out


def fingerprint_tokens(*tensors: torch.Tensor) -> str:
    """sha256 over the little-endian int64 bytes of the tensors, in order."""
    return sha256_hex(*(tensor_bytes(tensor.to(torch.int64), "<i8") for tensor in tensors))


def split_chunks(
    chunks: torch.Tensor, *, eval_chunks: int, max_chunks: int, shuffle: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fix one order (a seeded permutation), hold out the last `eval_chunks`, cap training at `max_chunks`."""
    n = chunks.shape[0]
    if eval_chunks >= n:
        raise DataError(
            f"the corpus packs into {n} chunks, not enough to hold out lm.eval_chunks = {eval_chunks}"
        )
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        chunks = chunks[order]
    train, held_out = chunks[: n - eval_chunks], chunks[n - eval_chunks :]
    if max_chunks:
        train = train[:max_chunks]
    return train, held_out


def build_token_chunks(
    cfg: LmConfig, tokenizer: Any, *, shuffle: bool = True, shuffle_seed: int = 0
) -> TokenChunks:
    """The whole text pipeline: corpus → token ids → packed chunks → shuffled train / eval split."""
    corpus = load_corpus(cfg)
    special = special_tokens(tokenizer)
    tokens = tokenize_documents(tokenizer, corpus.documents)
    chunks = pack_documents(tokens, cfg.ctx_len, prefix=special.prefix, separator=special.separator)
    train, held_out = split_chunks(
        chunks, eval_chunks=cfg.eval_chunks, max_chunks=cfg.max_chunks, shuffle=shuffle, seed=shuffle_seed
    )
    return TokenChunks(
        train, held_out, special.all_ids, corpus.name, fingerprint_tokens(train, held_out)
    )
