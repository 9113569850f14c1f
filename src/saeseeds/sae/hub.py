"""Checkpoint names on the Hugging Face hub (`OWNER/REPO/FOLDER`, `hf://...`) and SAELens `release/sae_id`
pairs, resolved to a local folder through the Hugging Face cache (offline works once the files are cached).

    hf://EleutherAI/sae-pythia-70m-32k/layers.3      a folder of a hub repo (cfg.json + weights inside)
    EleutherAI/sae-pythia-70m-32k/layers.3           the same, when no local path of that name exists
    saelens://gpt2-small-res-jb/blocks.0.hook_resid_pre   a SAELens release and SAE id (needs sae-lens)
    gpt2-small-res-jb/blocks.0.hook_resid_pre        the same, when the first part is a SAELens release
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from saeseeds.errors import CheckpointError

HF_PREFIX = "hf://"
SAELENS_PREFIX = "saelens://"
_TRUE = ("1", "true", "yes", "on")


def normalized(name: str) -> str:
    """`name` with a prefix that `pathlib.Path` collapsed (`hf:/x`) restored (`hf://x`)."""
    return re.sub(r"^(hf|saelens):/+", r"\1://", str(name))


def is_hub_name(name: str) -> bool:
    """Whether `name` (not an existing path) reads as a hub name: a prefix, or a relative `a/b...` path."""
    name = normalized(name)
    if name.startswith((HF_PREFIX, SAELENS_PREFIX)):
        return True
    parts = name.split("/")
    return (
        len(parts) >= 2
        and not name.startswith(("/", ".", "~"))
        and "\\" not in name
        and all(p and p not in (".", "..") for p in parts)
    )


def resolve_checkpoint(name: str | Path) -> Path:
    """A local checkpoint folder for `name`: an existing path as it is, else a hub name via the cache.

    CheckpointError (one line) when it is neither: the path is missing and, read as a hub name, the files are
    not in the cache and cannot be downloaded.
    """
    path = Path(name)
    text = str(name)
    if path.exists() or not is_hub_name(text) or _starts_locally(path):
        if not path.exists():
            raise CheckpointError(f"checkpoint directory {path} does not exist{_closest(path)}")
        return path
    return resolve_hub_name(text)


def _starts_locally(path: Path) -> bool:
    """Whether a relative name's first folder exists here: then it is a mistyped local path, never a hub name
    (looking it up on the hub would only fail, after ~15 s of retries)."""
    return not normalized(str(path)).startswith((HF_PREFIX, SAELENS_PREFIX)) and Path(path.parts[0]).is_dir()


def _closest(path: Path) -> str:
    """'; closest entries in PARENT: ...' for the deepest existing parent of a missing path."""
    import difflib

    parent = next((p for p in path.parents if p.is_dir()), None)
    if parent is None:
        return ""
    close = difflib.get_close_matches(path.relative_to(parent).parts[0], [e.name for e in parent.iterdir()], n=4)
    return f"; closest entries in {parent}: {', '.join(close)}" if close else ""


def resolve_hub_name(name: str) -> Path:
    """The local folder of a hub name (module docstring), downloading it unless offline or already cached."""
    name = normalized(name)
    if name.startswith(SAELENS_PREFIX):
        release, _, sae_id = name.removeprefix(SAELENS_PREFIX).partition("/")
        if not release or not sae_id:
            raise CheckpointError(f"{name}: expected saelens://RELEASE/SAE_ID")
        repo_id, folder = saelens_location(release, sae_id, name)
        return download_folder(repo_id, folder, name)
    if not name.startswith(HF_PREFIX):
        directory = saelens_directory()
        release, _, sae_id = name.partition("/")
        if directory is not None and release in directory:
            repo_id, folder = saelens_location(release, sae_id, name)
            return download_folder(repo_id, folder, name)
    parts = name.removeprefix(HF_PREFIX).split("/")
    if len(parts) < 2 or not all(parts):
        raise CheckpointError(f"{name}: expected OWNER/REPO[/FOLDER] (a Hugging Face model repo)")
    return download_folder("/".join(parts[:2]), "/".join(parts[2:]), name)


def saelens_directory() -> dict[str, Any] | None:
    """SAELens's registry of pretrained releases, or None when sae-lens is not installed."""
    try:
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory
    except ImportError:
        return None
    return get_pretrained_saes_directory()


def saelens_location(release: str, sae_id: str, name: str) -> tuple[str, str]:
    """(repo_id, folder) of a SAELens release's SAE; CheckpointError when unknown or stored in another format."""
    directory = saelens_directory()
    if directory is None:
        raise CheckpointError(
            f"{name}: SAELens release names are looked up in sae-lens's registry, and sae-lens is not installed "
            "(pip install sae-lens), or give the hub folder as OWNER/REPO/FOLDER"
        )
    lookup = directory.get(release)
    if lookup is None:
        raise CheckpointError(f"{name}: {release!r} is not a SAELens release")
    if sae_id not in lookup.saes_map:
        known = ", ".join(sorted(lookup.saes_map)[:5])
        raise CheckpointError(f"{name}: release {release!r} has no SAE {sae_id!r} (e.g. {known})")
    if lookup.conversion_func not in (None, "sparsify"):
        raise CheckpointError(
            f"{name}: release {release!r} is stored in another format (SAELens converter "
            f"{lookup.conversion_func!r}); saeseeds reads SAELens, sparsify and dictionary_learning folders"
        )
    if lookup.norm_scaling_factor.get(sae_id) is not None:
        raise CheckpointError(
            f"{name}: this SAE expects activations scaled by {lookup.norm_scaling_factor[sae_id]} "
            "(SAELens norm_scaling_factor), which its files do not record; saeseeds would encode it wrongly"
        )
    return lookup.repo_id, lookup.saes_map[sae_id]


def cache_dir() -> str | None:
    """The hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else huggingface_hub's default (read at call time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def offline() -> bool:
    """Whether downloads are off ($HF_HUB_OFFLINE, read at call time)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def download_folder(repo_id: str, folder: str, name: str) -> Path:
    """`folder` of hub repo `repo_id` in the local cache, fetched (only that folder) when missing and online."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = [f"{folder}/*"] if folder else None
    try:
        root = Path(snapshot_download(repo_id, allow_patterns=patterns, cache_dir=cache_dir(),
                                      local_files_only=True))
        if _has_files(root / folder):
            return root / folder
    except LocalEntryNotFoundError:
        pass
    where = cache_dir() or "the default Hugging Face cache"
    if offline():
        raise CheckpointError(f"{name} does not exist as a local path, and hub folder {repo_id}/{folder} is not in {where} "
                              "(offline: HF_HUB_OFFLINE is set)")
    try:
        root = Path(snapshot_download(repo_id, allow_patterns=patterns, cache_dir=cache_dir()))
    except Exception as err:  # network, auth, missing repo: huggingface_hub raises many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(
            f"{name} does not exist as a local path, is not in {where}, and the hub download failed ({first})"
        ) from err
    if not _has_files(root / folder):
        raise CheckpointError(f"{name}: the hub repo {repo_id} has no folder {folder!r}")
    return root / folder


def _has_files(folder: Path) -> bool:
    """Whether `folder` exists and holds at least one file (at any depth)."""
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))
