"""The bad-input campaigns (every row: the command, what the error must name) as one table-driven test.

Promise under test: bad input gets ONE line on stderr naming the problem (file, field, flag, value), exit status 2,
never a traceback, and no pre-existing file is changed; a failing command leaves nothing under a fresh ``--out``.

Every row runs the real CLI (``python -m saeseeds ...``) in its own subprocess, offline. Cost: a row whose error is
found before the heavy imports takes ~0.2 s, one that needs torch ~1-2 s, and there are 127 rows (108 from the
review, IDs as there; ``X`` rows are extra), so they do not run one after another: a module-scoped fixture runs the
whole table on a pool of 2 threads (the CI machine has 2 cores; more workers only queue on the CPU) and each
parametrized test then checks its own row's result. The module takes ~70 s on 2 cores shared with other work. Rows that write nothing of their own
share one read-only fixture tree (a tiny npy dataset, a finished 2-seed run, checkpoints with defects made from it);
every file of that tree is hashed when it is built, each row re-hashes the paths it names (so a change is blamed on
the right row even though rows run concurrently), and a last test checks the whole tree against the first hashes.
Rows that may write get a fresh ``--out`` under ``outs/<ID>`` or their own copy of a run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

WORKERS = 2
TIMEOUT_S = 120


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # "{fx}" is the fixture tree, "{out}" a fresh output path outs/<id>
    keys: tuple[str, ...]  # every one must appear in the error line
    note: str = ""
    setup: str = ""  # name of a per-row setup in SETUPS (a private copy to write into)
    skip_if_cuda: bool = False


def C(id: str, argv: str, *keys: str, note: str = "", setup: str = "", skip_if_cuda: bool = False) -> Case:
    return Case(id, tuple(argv.split()), keys, note, setup, skip_if_cuda)


T = "train {fx}/cfg/ok.toml --out {out}"  # a valid train command line, bad by one override or config
CMP = "compare {fx}/ck/good0 {fx}/ck/good1 --out {out}"
ANA = "analyze {fx}/run --out {out}"

CASES: list[Case] = [
    # --- train: config file and overrides
    C("T01", "train {fx}/cfg/nope.toml --out {out}", "nope.toml", note="missing config"),
    C("T02", "train {fx}/cfg/malformed.toml --out {out}", "malformed.toml", "TOML"),
    C("T03", "train {fx}/cfg/unknown_field.toml --out {out}", "bogus_field"),
    C("T05", "train {fx}/cfg/wrongtype.toml --out {out}", "batch_size", "lots"),
    C("T07", f"{T} --train.batch_size 0", "batch_size"),
    C("T10", f"{T} --train.seeds []", "seeds"),
    C("T11", f"{T} --train.seeds 0,0", "seeds"),
    C("T13", f"{T} --sae.num_latents -5", "num_latents", "-5"),
    C("T14", f"{T} --sae.num_latents 0 --sae.expansion_factor 0", "expansion_factor"),
    C("T15", f"{T} --sae.k 500", "k", "500"),
    C("T16", f"{T} --sae.k 0", "k"),
    C("T17", f"{T} --sae.architecture gated", "gated"),
    C("T18", f"{T} --train.lr -1", "lr", "-1"),
    C("T20", f"{T} --train.device banana", "device", "banana"),
    C("T21", f"{T} --train.device cuda", "device", "cuda", skip_if_cuda=True),
    C("T22", f"{T} --train.checkpoint_every -1", "checkpoint_every", "-1"),
    C("T23", f"{T} --data.eval_fraction -0.5", "eval_fraction", "-0.5"),
    C("T24", f"{T} --data.eval_fraction 1.0", "eval_fraction"),
    C("T25", f"{T} --data.path {{fx}}/nonexistent.npy", "nonexistent.npy"),
    C("T26", f"{T} --data.path {{fx}}/data_nan.npy", "data_nan.npy", "NaN"),
    C("T28", f"{T} --data.path {{fx}}/data_3d.npy", "data_3d.npy", "2-D"),
    C("T30", f"{T} --data.path {{fx}}/data_obj.npy", "data_obj.npy"),
    C("T31", f"{T} --data.path {{fx}}/data_text.npy", "data_text.npy"),
    C("T32", f"{T} --data.path {{fx}}/data_small.npy", "data_small.npy", "batch"),
    C("T35", f"{T} --data.source parquet", "parquet"),
    C("T36", f"{T} --data.source cache --data.path {{fx}}/nocache", "nocache"),
    C("T40", f"{T} --train.bogus 1", "bogus"),
    C("T41", f"{T} --train.lr abc", "lr", "abc"),
    C("T42", f"{T} --saes.5.k 3", "saes.5"),
    C("T43", f"{T} --train.lr", "--train.lr"),
    C("T44", f"{T} extra_positional", "extra_positional"),
    C("TX1", f"{T} --sae.k eight", "k", "eight"),
    C("TX2", f"{T} --train.num_tokens -256", "num_tokens"),
    C("TX3", f"{T} --train.lr_warmup_steps -1", "lr_warmup_steps"),
    C("TX4", f"{T} --train.batch_size 2.5", "batch_size"),
    C("TX5", f"{T} --train.adam_beta1 1.5", "adam_beta1"),
    C("TX6", f"{T} --resume --overwrite", "--resume", "--overwrite"),
    # --- train: --out and --resume
    C("T45", "train {fx}/cfg/ok.toml --out {fx}/run", "--resume", note="existing run, no --resume"),
    C("T46", "train {fx}/cfg/ok.toml --out {fx}/foreign", "foreign", note="unrelated files incl. metrics.jsonl"),
    C("T47", "train {fx}/cfg/ok.toml --out {fx}/data.npy/sub", "data.npy"),
    C("T48", "train {fx}/cfg/ok.toml --out /proc/saeseeds_bad_input_test", "/proc/saeseeds_bad_input_test"),
    C("T49", "train {fx}/cfg/ok.toml --out {fx}/notes.txt", "notes.txt"),
    C("T50", "train {fx}/cfg/ok.toml --out {fx}/empty --resume", "trainer.json"),
    C("T51", "train {fx}/cfg/ok.toml --out {fx}/compare_out", "compare_out"),
    C("R13", "train {fx}/cfg/ok.toml --out {out} --resume", "trainer.json", setup="resume_corrupt_json"),
    C("R14", "train {fx}/cfg/ok.toml --out {out} --resume", "seed0.pt", setup="resume_truncated_state"),
    C("R15", "train {fx}/cfg/ok.toml --out {out} --resume", "trainer.json", "fingerprint",
      setup="resume_no_fingerprint"),
    C("R06", "train {fx}/cfg/ok.toml --out {out} --resume --train.seeds 0,1,2", "--resume", setup="resume_copy"),
    C("R16", "train {fx}/cfg/ok.toml --out {out} --resume --train.device banana", "banana", setup="resume_copy"),
    C("RX1", "train {fx}/cfg/ok.toml --out {out} --resume", "trainer.json", setup="resume_json_list"),
    # --- compare
    C("C01", "compare {fx}/nope {fx}/ck/good1 --out {out}", "nope"),
    C("C02", "compare {fx}/ck/good0 --out {out}", "two"),
    C("C03", "compare {fx}/ck/good0 {fx}/ck/d8 --out {out}", "d_in"),
    C("C04", "compare {fx}/ck/good0 {fx}/ck/truncated --out {out}", "truncated", "sae.safetensors"),
    C("C05", "compare {fx}/ck/good0 {fx}/ck/garbage --out {out}", "garbage", "sae.safetensors"),
    C("C06", "compare {fx}/ck/good0 {fx}/ck/nan --out {out}", "W_dec", "NaN"),
    C("C08", "compare {fx}/ck/btk0 {fx}/ck/btk_nan_thr --out {out}", "btk_nan_thr", "threshold"),
    C("C09", "compare {fx}/ck/good0 {fx}/ck/badjson --out {out}", "cfg.json"),
    C("C10", "compare {fx}/ck/good0 {fx}/ck/jsonlist --out {out}", "cfg.json"),
    C("C11", "compare {fx}/ck/good0 {fx}/empty --out {out}", "empty"),
    C("C12", "compare {fx}/ck/good0 {fx}/ck/missing_tensor --out {out}", "b_dec"),
    C("C13", "compare {fx}/ck/good0 {fx}/ck/wrong_shape --out {out}", "b_dec"),
    C("C14", "compare {fx}/ck/good0 {fx}/ck/k_big --out {out}", "k_big", "1000"),
    C("C15", "compare {fx}/ck/good0 {fx}/ck/gated --out {out}", "gated"),
    C("C18", "compare {fx}/ck/good0 {fx}/ck/k_eight --out {out}", "cfg.json", "eight"),
    C("C20", "compare {fx}/ck/good0 {fx}/ck/int32 --out {out}", "int32"),
    C("C27", "compare {fx}/ck/good0 {fx}/ck/evil_zip --out {out}", "ae.pt"),
    C("C28", "compare {fx}/ck/good0 {fx}/ck/evil_pickle --out {out}", "ae.pt"),
    C("C30", "compare {fx}/run_badrunjson --out {out}", "run.json"),
    C("C32", "compare {fx}/run_noseed1 --out {out}", "seed1"),
    C("CX4", "compare {fx}/run_badsaes --out {out}", "run.json", "saes"),
    C("C34", f"{CMP} --activations {{fx}}/data8.npy", "16"),
    C("C35", f"{CMP} --activations {{fx}}/nope.npy", "nope.npy"),
    C("C36", f"{CMP} --activations {{fx}}/data_nan.npy", "data_nan.npy"),
    C("C37", f"{CMP} --threshold 5", "--threshold", "5"),
    C("C38", f"{CMP} --threshold -1", "--threshold", "-1"),
    C("CX1", f"{CMP} --threshold 1.5", "--threshold", "1.5"),
    C("CX2", f"{CMP} --stability foo", "--stability", "foo"),
    C("CX3", f"{CMP} --cut endpoints --epsilon 0.7", "--epsilon", "0.7"),
    C("C39", f"{CMP} --device banana", "--device", "banana"),
    C("C40", f"{CMP} --max-tokens 0", "--max-tokens"),
    C("C42", "compare {fx}/ck/good0 {fx}/ck/good1 --out {fx}/compare_out", "compare_out", "--overwrite"),
    C("C43", "compare {fx}/ck/good0 {fx}/ck/good1 --out {fx}/run", "--out"),
    C("C44", "compare {fx}/ck/good0 {fx}/ck/good1 --out {fx}/data.npy/sub", "data.npy"),
    C("C45", f"{CMP.replace('{out}', '/proc/saeseeds_bad_input_test')}", "saeseeds_bad_input_test"),
    C("C46", "compare {fx}/ck/good0 {fx}/ck/good1 --out {fx}/notes.txt", "notes.txt"),
    C("CX5", "compare {fx}/ck/good0 {fx}/ck/transcoder --out {out}", "transcoder", "transcode"),
    C("CX6", "compare {fx}/ck/good0 {fx}/ck/skip --out {out}", "skip", "W_skip"),
    C("CX7", f"{CMP} --names only_one", "--names", "1 name"),
    C("CX8", "compare nosuchowner/nosuchrepo/layers.3 {fx}/ck/good0 --out {out}", "nosuchowner/nosuchrepo",
      "offline"),
    # --- export
    C("E01", "export {fx}/ck/good0 --format sparsify --out {out}", "--format", "sparsify"),
    C("E02", "export {fx}/nope --out {out}", "nope"),
    C("E03", "export {fx}/ck/good0 --out {fx}/notes.txt", "notes.txt"),
    C("E04", "export {fx}/ck/btk0 --out {out}", "btk0", "threshold"),
    C("E05", "export {fx}/empty --out {out}", "empty"),
    C("E06", "export {fx}/ck/good0 {fx}/ck/good1 --format run --out {out}", "--hookpoint"),
    C("E07", "export {fx}/ck/good0 {fx}/ck/d8 --format run --hookpoint h --out {out}", "d8", "d_in"),
    C("E08", "export {fx}/ck/good0 {fx}/ck/good1 --out {out}", "--format saelens", "one source"),
    # --- analyze
    C("A01", "analyze {fx}/nope_run --out {out}", "nope_run"),
    C("A03", "analyze {fx}/run_badrunjson --out {out}", "run.json"),
    C("A04", "analyze {fx}/run_noconfig --out {out}", "run.json", "config"),
    C("A07", f"{ANA} --config nope", "nope"),
    C("A10", "analyze {fx}/run_noseed1 --out {out}", "seed1"),
    C("AX4", "analyze {fx}/run_badsaes --out {out}", "run.json", "saes"),
    C("A08", "analyze {fx}/ck/good0 --out {out}", "run.json"),
    C("A11", "analyze {fx}/run_nanckpt --out {out}", "W_dec"),
    C("A13", f"{ANA} --n-random -1", "--n-random"),
    C("AX1", f"{ANA} --n-random 0", "--n-random"),
    C("A14", f"{ANA} --n-top 0", "--n-top"),
    C("A15", f"{ANA} --subspace-dim -3", "--subspace-dim"),
    C("A20", f"{ANA} --threshold 2", "--threshold"),
    C("AX2", f"{ANA} --cut endpoints --epsilon 0.7", "--epsilon"),
    C("A16", "analyze {fx}/run --out {fx}/data.npy/sub", "data.npy"),
    C("A18", "analyze {fx}/run --out {fx}/foreign", "foreign"),
    C("AX3", "analyze {fx}/run --out {fx}/notes.txt", "notes.txt"),
    # --- synthetic
    C("S01", "synthetic {fx}/cfg/nope.toml --out {out}", "nope.toml"),
    C("S02", "synthetic {fx}/cfg/ok.toml --out {out}", "data.source"),
    C("S03", "synthetic --out {out} --synthetic.group_rank 100", "group_rank"),
    C("S04", "synthetic --out {fx}/empty --report-only", "run.json"),
    C("S05", "synthetic --out {fx}/run --report-only", "synthetic"),
    C("S06", "synthetic --out {fx}/run", "run"),
    C("S07", "synthetic --out {out} --threads -1", "--threads"),
    C("S08", "synthetic --out {out} --synthetic.bogus 1", "bogus"),
    C("S09", "synthetic --out {out} --synthetic.num_features 0", "num_features"),
    C("S10", "synthetic --out {fx}/data.npy/sub", "data.npy"),
    C("SX1", "synthetic --out {fx}/notes.txt", "notes.txt"),
    # --- cache
    C("K01", "cache {fx}/cfg/nope.toml --out {out}", "nope.toml"),
    C("K02", "cache {fx}/cfg/lm_missing.toml --out {out}", "no-such-model"),
    C("K03", "cache {fx}/cfg/lm_missing.toml --out {out} --batches-per-shard 0", "batches"),
    C("K04", "cache {fx}/cfg/lm_missing.toml --out {fx}/data.npy/sub", "data.npy"),
    C("K07", "cache {fx}/cfg/lm_missing.toml --out {fx}/run", "run"),
    C("KX1", "cache {fx}/cfg/lm_missing.toml --out {fx}/notes.txt", "notes.txt"),
    # --- demo
    C("D01", "demo --out {out} --train.bogus 1", "bogus"),
    C("D02", "demo --out {fx}/notes.txt", "notes.txt"),
    C("D03", "demo --out {fx}/demo_user --train.lr abc", "demo_user"),
    C("DX1", "demo --out {fx}/data.npy/sub", "data.npy"),
    C("DX2", "demo --out {out} --resume", "--resume"),
    # --- study
    C("Y01", "study {fx}/cfg/nope.toml --out {out}", "nope.toml"),
    C("Y02", "study {fx}/cfg/ok.toml --out {out}", "ok.toml", "[study]"),
    C("Y03", "study {fx}/cfg/study.toml --out {out} --study.k 0", "study.k[0]", "0"),
    C("Y04", "study {fx}/cfg/study.toml --out {out} --study.design cube", "study.design", "cube"),
    C("Y05", "study {fx}/cfg/study.toml --out {out} --study.seeds 0", "study.seeds"),
    C("Y06", "study {fx}/cfg/study.toml --out {fx}/run", "run", "study"),
    C("Y07", "study {fx}/cfg/study.toml --out {out} --resume", "--resume"),
    C("Y08", "study {fx}/cfg/study.toml --out {out} --study.milestones 1.5", "study.milestones[0]", "1.5"),
    C("Y09", "study {fx}/cfg/study.toml --out {out} --sae.target_l0 4", "target_l0", "topk"),
    C("Y10", "study {fx}/cfg/study.toml --out {fx}/notes.txt", "notes.txt"),
    C("Y11", "study {fx}/cfg/study.toml --out {out} --study.bogus 1", "bogus"),
    # --- report (every row fails before anything is written)
    C("H01", "report {fx}/nope", "nope", "no such directory"),
    C("H02", "report {fx}/notes.txt", "notes.txt", "is a file"),
    C("H03", "report {fx}/foreign", "foreign", "no saeseeds output"),
    C("H04", "report {fx}/run --out {fx}/notes.txt", "notes.txt", "not a saeseeds report"),
    C("H05", "report {fx}/run --out {fx}/data.npy/page.html", "data.npy"),
    C("H06", "report {fx}/run --out {fx}/foreign", "foreign", "directory"),
    C("H07", "report {fx}/run --max-latents -2", "--max-latents", "-2"),
    # --- training logs and the shared --quiet (issue 16)
    C("LX1", T + " --train.log_every -1", "train.log_every", "-1"),
    C("LX2", T + " --train.tensorboard maybe", "train.tensorboard", "maybe"),
    *([C("LX3", T + " --train.wandb_project proj", "train.wandb_project", "pip install wandb")]
      if importlib.util.find_spec("wandb") is None else []),
    C("QX1", "compare {fx}/nope {fx}/ck/good1 --out {out} --quiet", "nope", note="errors print under --quiet"),
    C("QX2", "train {fx}/cfg/nope.toml --out {out} -q", "nope.toml"),
    C("VX1", "demo --out {out} --no-progres", "--no-progres", note="no prefix matching of long options"),
    # --- pool (issue 15)
    C("P01", "pool {fx}/nope_run --out {out}", "nope_run", "does not exist"),
    C("P02", "pool {fx}/run --out {out} --fit-tokens -5", "--fit-tokens", "-5"),
    C("P03", "pool {fx}/run --out {out} --ev-tolerance 2", "--ev-tolerance", "2"),
    C("P04", "pool {fx}/run --out {out} --unique-cos 0", "--unique-cos", "(0, 1]"),
    C("P05", "pool {fx}/run --out {out} --threshold 1.5", "--threshold", "1.5"),
    C("P06", "pool {fx}/foreign --out {out}", "foreign", "neither a run"),
    C("P07", "pool {fx}/run --out {fx}/foreign", "foreign", "pool"),
    C("P08", "pool {fx}/run --out {out} --config nope", "--config", "nope"),
    # --- the command line itself
    C("V02", "frobnicate", "frobnicate"),
    C("V03", "train {fx}/cfg/ok.toml", "--out"),
    # --- names that become paths (reliability campaign 3, D4-D6; more in tests/test_out_safety.py)
    C("B38", f"{T} --data.hookpoint ../escape_here/x", "data.hookpoint", "../escape_here/x"),
    C("B40", f"{T} --data.hookpoint .state", "data.hookpoint", ".state"),
    C("B42", "export {fx}/ck/good0 {fx}/ck/good1 --format run --hookpoint ../escape_here/y --out {out}",
      "--hookpoint", "../escape_here/y"),
]

OK_TOML = """\
[data]
source = "npy"
path = "{fx}/data.npy"

[train]
seeds = [0, 1]
batch_size = 256
num_tokens = 1024
lr_warmup_steps = 1
eval_tokens = 256
store_eval_tokens = 256
checkpoint_every = 2
device = "cpu"

[[sae]]
architecture = "topk"
num_latents = 32
k = 4
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_hashes(root: Path, skip: str | None = None) -> dict[str, str]:
    """sha256 of every file under `root` (a file itself when `root` is one), keyed by path."""
    if root.is_file():
        return {str(root): _sha(root)}
    if not root.is_dir():
        return {}
    return {str(p): _sha(p) for p in sorted(root.rglob("*")) if p.is_file() and not (skip and skip in p.parts)}


def _copy_ckpt(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_cfg(ckpt: Path, **changes: object) -> None:
    from saeseeds.sae.checkpoint import read_checkpoint_cfg, write_checkpoint_cfg

    write_checkpoint_cfg(ckpt, read_checkpoint_cfg(ckpt) | changes)  # each key in the file that holds it


def _edit_weights(ckpt: Path, fn) -> None:
    tensors = load_file(ckpt / "sae.safetensors")
    save_file(fn(tensors), ckpt / "sae.safetensors")


class _Evil:
    """A pickle whose loading would call a function (harmless here; weights_only must refuse it)."""

    def __reduce__(self):
        return (os.getcwd, ())


def _build_checkpoints(fx: Path, run: Path) -> None:
    from saeseeds.config import SaeConfig
    from saeseeds.sae import SparseAutoencoder, save_sae

    ck = fx / "ck"
    seeds = sorted((run / "activations").glob("*/seed*"))
    good0 = _copy_ckpt(seeds[0], ck / "good0")
    _copy_ckpt(seeds[1], ck / "good1")
    data = (good0 / "sae.safetensors").read_bytes()
    _copy_ckpt(good0, ck / "truncated")
    (ck / "truncated" / "sae.safetensors").write_bytes(data[: len(data) // 2])
    _copy_ckpt(good0, ck / "garbage")
    (ck / "garbage" / "sae.safetensors").write_bytes(b"garbage")

    def nan_dec(t):
        t["W_dec"][0, 0] = float("nan")
        return t

    _edit_weights(_copy_ckpt(good0, ck / "nan"), nan_dec)
    _edit_weights(_copy_ckpt(good0, ck / "int32"), lambda t: {k: (v * 100).to(torch.int32) for k, v in t.items()})
    _edit_weights(_copy_ckpt(good0, ck / "missing_tensor"), lambda t: {k: v for k, v in t.items() if k != "b_dec"})
    _edit_weights(_copy_ckpt(good0, ck / "wrong_shape"), lambda t: t | {"b_dec": t["b_dec"][:-1].clone()})
    (_copy_ckpt(good0, ck / "badjson") / "cfg.json").write_text("{bad json")
    (_copy_ckpt(good0, ck / "jsonlist") / "cfg.json").write_text("[1, 2]")
    _edit_cfg(_copy_ckpt(good0, ck / "k_eight"), k="eight")
    _edit_cfg(_copy_ckpt(good0, ck / "k_big"), k=1000)
    _edit_cfg(_copy_ckpt(good0, ck / "gated"), architecture="gated")
    _edit_cfg(_copy_ckpt(good0, ck / "transcoder"), transcode=True)  # sparsify's transcoder flag
    _edit_weights(_copy_ckpt(good0, ck / "skip"), lambda t: t | {"W_skip": torch.zeros(16, 16)})
    from saeseeds.sae.checkpoint import read_checkpoint_cfg, write_checkpoint_cfg

    for name in ("k_eight", "k_big", "gated"):  # the loader would take the architecture from saeseeds_config first
        merged = read_checkpoint_cfg(ck / name)
        merged.pop("saeseeds_config", None)
        write_checkpoint_cfg(ck / name, merged)
    gen = torch.Generator().manual_seed(0)
    save_sae(SparseAutoencoder(SaeConfig(num_latents=32, k=4), 8, generator=gen), ck / "d8")
    btk = SparseAutoencoder(SaeConfig(architecture="batchtopk", num_latents=32, k=4), 16, generator=gen)
    save_sae(btk, ck / "btk0")
    with torch.no_grad():
        btk.threshold.fill_(float("nan"))
    save_sae(btk, ck / "btk_nan_thr")
    for name, zip_format in (("evil_zip", True), ("evil_pickle", False)):
        d = ck / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoder"}}))
        if zip_format:
            torch.save({"x": _Evil()}, d / "ae.pt")
        else:
            (d / "ae.pt").write_bytes(pickle.dumps({"x": _Evil()}))


def _build_runs(fx: Path, run: Path) -> None:
    bad = fx / "run_badrunjson"
    shutil.copytree(run, bad)
    (bad / "run.json").write_text("{not json")
    noconfig = fx / "run_noconfig"
    shutil.copytree(run, noconfig)
    manifest = json.loads((noconfig / "run.json").read_text())
    del manifest["config"]
    (noconfig / "run.json").write_text(json.dumps(manifest))
    nanckpt = fx / "run_nanckpt"
    shutil.copytree(run, nanckpt)
    seed1 = sorted((nanckpt / "activations").glob("*/seed1"))[0]

    def nan_dec(t):
        t["W_dec"][1, 1] = float("nan")
        return t

    _edit_weights(seed1, nan_dec)
    noseed1 = fx / "run_noseed1"
    shutil.copytree(run, noseed1)
    shutil.rmtree(sorted((noseed1 / "activations").glob("*/seed1"))[0])
    badsaes = fx / "run_badsaes"
    shutil.copytree(run, badsaes)
    manifest = json.loads((badsaes / "run.json").read_text())
    manifest["saes"] = [{"path": "activations/x/seed0"}]  # an entry without hookpoint, name, seed
    (badsaes / "run.json").write_text(json.dumps(manifest))


def _build_tree(fx: Path) -> None:
    from saeseeds.cli import main

    rng = np.random.default_rng(0)
    np.save(fx / "data.npy", rng.standard_normal((4096, 16)).astype(np.float32))
    np.save(fx / "data8.npy", rng.standard_normal((512, 8)).astype(np.float32))
    np.save(fx / "data_small.npy", rng.standard_normal((100, 16)).astype(np.float32))
    nan = rng.standard_normal((4096, 16)).astype(np.float32)
    nan[[3, 700, 4000]] = np.nan
    np.save(fx / "data_nan.npy", nan)
    np.save(fx / "data_3d.npy", rng.standard_normal((512, 4, 4)).astype(np.float32))
    np.save(fx / "data_obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (fx / "data_text.npy").write_text("this is not a numpy file\n")
    (fx / "notes.txt").write_text("a user's notes\n")
    (fx / "empty").mkdir()
    (fx / "nocache").mkdir()
    foreign = fx / "foreign"
    foreign.mkdir()
    (foreign / "metrics.jsonl").write_text('{"mine": 1}\n')
    (foreign / "analysis.json").write_text('{"mine": 1}\n')
    compare_out = fx / "compare_out"
    compare_out.mkdir()
    (compare_out / ".saeseeds-output.json").write_text(json.dumps({"kind": "compare"}))
    (compare_out / "summary.json").write_text('{"earlier": true}\n')
    demo_user = fx / "demo_user"
    demo_user.mkdir()
    (demo_user / "demo.toml").write_text("# the user's own demo config\n")

    cfg = fx / "cfg"
    cfg.mkdir()
    ok = OK_TOML.format(fx=fx)
    (cfg / "ok.toml").write_text(ok)
    (cfg / "study.toml").write_text(ok + "\n[study]\nk = [2, 4]\n")
    (cfg / "malformed.toml").write_text("[train\nbatch_size = 3\n")
    (cfg / "unknown_field.toml").write_text(ok.replace("[train]\n", "[train]\nbogus_field = 1\n"))
    (cfg / "wrongtype.toml").write_text(ok.replace("batch_size = 256", 'batch_size = "lots"'))
    (cfg / "lm_missing.toml").write_text(
        ok.replace('source = "npy"', 'source = "lm"') + '\n[lm]\nmodel = "{}"\n'.format(fx / "no-such-model")
    )
    run = fx / "run"
    assert main(["train", str(cfg / "ok.toml"), "--out", str(run)]) == 0
    _build_checkpoints(fx, run)
    _build_runs(fx, run)


def _setup_resume(kind: str, fx: Path, out: Path) -> None:
    """A private copy of the finished run with its trainer state damaged as `kind` says."""
    shutil.copytree(fx / "run", out)
    state = out / ".state" / "trainer.json"
    if kind == "resume_corrupt_json":
        state.write_text("{not json")
    elif kind == "resume_json_list":
        state.write_text("[]")
    elif kind == "resume_no_fingerprint":
        data = json.loads(state.read_text())
        data.pop("fingerprint", None)
        state.write_text(json.dumps(data))
    elif kind == "resume_truncated_state":
        for pt in (out / ".state").rglob("seed0.pt"):
            pt.write_bytes(pt.read_bytes()[:100])
    # make it look interrupted so --resume really reads the state
    manifest = json.loads((out / "run.json").read_text())
    manifest["status"] = "running"
    (out / "run.json").write_text(json.dumps(manifest))


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    changed: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _run_case(case: Case, fx: Path) -> Outcome:
    import time

    out = fx / "outs" / case.id
    argv = [a.replace("{fx}", str(fx)).replace("{out}", str(out)) for a in case.argv]
    private = None
    if case.setup:
        private = out
        _setup_resume(case.setup, fx, out)
    named = [Path(a) for a in argv if a.startswith(str(fx)) and Path(a) != out]
    before: dict[str, str] = {}
    for path in named + ([private] if private else []):
        before |= _tree_hashes(path)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                        "MPLBACKEND": "Agg"}  # warnings on stderr are part of what is checked
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "saeseeds", *argv], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    after: dict[str, str] = {}
    for path in named + ([private] if private else []):
        after |= _tree_hashes(path)
    changed = sorted(p for p in before if after.get(p) != before[p])
    left: list[str] = []
    if private is None and out.exists():
        left = [str(p) for p in out.rglob("*") if p.is_file()] or [str(out)]
    elif private is not None:
        left = sorted(set(after) - set(before))
    return Outcome(proc.returncode, proc.stdout, proc.stderr, changed, left, seconds)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> tuple[Path, dict[str, str], dict[str, Outcome]]:
    fx = tmp_path_factory.mktemp("badinputs")
    _build_tree(fx)
    (fx / "outs").mkdir()
    baseline = _tree_hashes(fx, skip="outs")
    cuda = torch.cuda.is_available()
    todo = [c for c in CASES if not (c.skip_if_cuda and cuda)]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = dict(zip([c.id for c in todo], pool.map(lambda c: _run_case(c, fx), todo)))
    return fx, baseline, results


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, campaign) -> None:
    fx, _, results = campaign
    if case.id not in results:
        pytest.skip("needs a machine without CUDA")
    res = results[case.id]
    where = f"{case.id} {' '.join(case.argv)}\nstdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-4000:]}"
    assert "Traceback" not in res.stderr + res.stdout, where
    assert res.returncode == 2, where
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, where
    line = lines[0]
    assert line.startswith("saeseeds"), where
    for key in case.keys:
        assert key.replace("{fx}", str(fx)) in line, f"{key!r} missing from the error line\n{where}"
    assert not res.changed, f"pre-existing files changed: {res.changed}\n{where}"
    assert not res.left_behind, f"failing command left files behind: {res.left_behind}\n{where}"


def test_fixture_tree_unchanged(campaign) -> None:
    """Whatever ran concurrently, the shared fixture tree is byte for byte what was built."""
    fx, baseline, _ = campaign
    now = _tree_hashes(fx, skip="outs")
    changed = sorted(p for p in baseline if now.get(p) != baseline[p])
    added = sorted(set(now) - set(baseline))
    assert not changed and not added, f"changed: {changed}\nadded: {added}"
