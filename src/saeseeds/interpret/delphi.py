"""Read EleutherAI delphi's explanations and scores back, so `saeseeds interpret --from-delphi DIR` analyses a run
that delphi explained and scored elsewhere (on a GPU box) exactly like one explained here.

The format read is that of delphi's main branch as of 2025 (`python -m delphi MODEL SPARSE_MODEL --hookpoints H
--scorers detection fuzz --name NAME`, which writes under `results/NAME/`; docs/ecosystem.md gives the command):

- `explanations/<module>_latent<N>.txt`: the explanation as one JSON string (`orjson.dumps(explanation)`);
- `scores/<scorer>/<module>_latent<N>.txt`: a JSON list, one record per scored example, each delphi's
  `ClassifierOutput` (`str_tokens`, `activations`, `distance`, `activating`, `prediction`, `probability`,
  `correct`); `prediction` is null where the scorer's answer could not be parsed, `probability` is null unless
  delphi ran with `--log_probs`. Only the `detection` and `fuzz` folders are read; delphi's other scorers
  (embedding, simulation, ...) write other records.

`<module>` is the hookpoint as delphi resolved it on the model, with any '/' written as '--'. Per latent and
scorer we compute what `interpret` reports for its own scorers (docs/definitions.md, "Interpretability"):
balanced accuracy of delphi's yes/no predictions against `activating`, and AUROC of its probabilities, or, when
delphi logged none, of the 0/1 predictions (then equal to the balanced accuracy; `auroc_source` says which).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saeseeds.errors import DataError
from saeseeds.interpret.interface import Explanation
from saeseeds.interpret.scoring import auroc, balanced_accuracy

_FILE = re.compile(r"^(?P<module>.+)_latent(?P<latent>\d+)\.txt$")
CLASSIFIER_SCORERS = ("detection", "fuzz")
"""delphi's scorers whose records are yes/no classifications (read); its others (embedding, simulation,
surprisal, ...) write other records and are left alone."""


@dataclass(frozen=True)
class DelphiScore:
    """One scorer's verdict on one latent's explanation, from delphi's per-example records."""

    scorer: str
    n: int
    """Examples delphi scored (activating and not)."""
    n_failed: int
    """Examples whose answer delphi could not parse (prediction null): left out of the metrics."""
    balanced_accuracy: float
    auroc: float
    auroc_source: str
    """'probability' (delphi ran with --log_probs) or 'prediction' (0/1 answers; AUROC = balanced accuracy)."""
    activating: tuple[bool, ...] = field(repr=False)
    prediction: tuple[bool | None, ...] = field(repr=False)
    probability: tuple[float | None, ...] = field(repr=False)


@dataclass(frozen=True)
class DelphiLatent:
    """One latent as delphi left it: its explanation and its scores by scorer name ('detection', 'fuzz', ...)."""

    module: str
    latent: int
    explanation: Explanation
    scores: dict[str, DelphiScore]


def _index(folder: Path) -> dict[str, dict[int, Path]]:
    """delphi's `<module>_latent<N>.txt` files in `folder`: module → latent → path."""
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = _FILE.match(path.name)
        if match and path.is_file():
            found.setdefault(match["module"], {})[int(match["latent"])] = path
    return found


def _explained(directory: Path) -> dict[str, dict[int, Path]]:
    """The explanation files of delphi's output `directory` (`_index` of its explanations/), or DataError in one line
    when it has no explanations/ folder."""
    explanations = directory / "explanations"
    if not explanations.is_dir():
        raise DataError(f"{directory}: no explanations/ folder; give delphi's output directory (results/<name>)")
    return _index(explanations)


def _pick_module(directory: Path, modules: dict[str, dict[int, Path]], module: str | None) -> str:
    """The module to read: the one asked for ('/' as delphi writes it, '--'), else the only one present."""
    if module is not None:
        safe = module.replace("/", "--")
        if safe not in modules:
            have = ", ".join(sorted(modules)) or "none"
            raise DataError(f"{directory}/explanations: no files for module {module!r} (modules there: {have})")
        return safe
    if len(modules) != 1:
        have = ", ".join(sorted(modules)) or "none"
        raise DataError(f"{directory}/explanations: name the module to read (modules there: {have})")
    return next(iter(modules))


def _load_json(path: Path) -> Any:
    """A delphi file's JSON, or DataError naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path}: not a delphi JSON file ({' '.join(str(err).split())[:120]})") from err


def read_explanation(path: Path, key: str) -> Explanation:
    """One explanation file: a JSON string (a list of strings, as some explainers write, gives the first)."""
    data = _load_json(path)
    if isinstance(data, list) and data and all(isinstance(x, str) for x in data):
        return Explanation(key, data[0].strip(), {"backend": "delphi", "alternatives": data[1:]})
    if not isinstance(data, str):
        raise DataError(f"{path}: a delphi explanation is a JSON string, found {type(data).__name__}")
    return Explanation(key, data.strip(), {"backend": "delphi"})


def _flag(value: Any, path: Path, i: int, name: str, *, nullable: bool) -> bool | None:
    """A record's boolean field (0/1 accepted); None where allowed; DataError naming the file and record else."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise DataError(f"{path}: record {i}: {name!r} must be true/false{' or null' if nullable else ''}, "
                    f"found {value!r}")


def _probability(value: Any, path: Path, i: int) -> float | None:
    """A record's probability in [0, 1], or None; DataError otherwise."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0:
        return float(value)
    raise DataError(f"{path}: record {i}: 'probability' must be in [0, 1] or null, found {value!r}")


def read_score(path: Path, scorer: str) -> DelphiScore:
    """One score file: delphi's per-example records → balanced accuracy and AUROC (see the module docstring)."""
    data = _load_json(path)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: a delphi score file is a JSON list of records (objects)")
    activating, prediction, probability = [], [], []
    for i, record in enumerate(data):
        if "activating" not in record:
            raise DataError(f"{path}: record {i} has no 'activating' field")
        activating.append(bool(_flag(record["activating"], path, i, "activating", nullable=False)))
        prediction.append(_flag(record.get("prediction"), path, i, "prediction", nullable=True))
        probability.append(_probability(record.get("probability"), path, i))
    answered = [i for i, p in enumerate(prediction) if p is not None]
    labels = [int(activating[i]) for i in answered]
    predicted = [float(prediction[i]) for i in answered]
    ba = balanced_accuracy(predicted, labels, 0.5) if answered else math.nan
    with_p = [i for i, p in enumerate(probability) if p is not None]
    if with_p:
        area, source = auroc([probability[i] for i in with_p], [int(activating[i]) for i in with_p]), "probability"
    else:
        area, source = (auroc(predicted, labels) if answered else math.nan), "prediction"
    return DelphiScore(scorer, len(data), len(data) - len(answered), ba, area, source,
                       tuple(activating), tuple(prediction), tuple(probability))


def read_delphi(directory: str | Path, module: str | None = None) -> dict[int, DelphiLatent]:
    """Every explained latent of `module` in delphi's output `directory` (its results/<name>), by latent index,
    with its detection and fuzz scores where delphi wrote them.

    `module` None reads the only module there. Raises DataError (one line) for a missing folder, an unknown or
    ambiguous module, or a file that is not in delphi's format.
    """
    directory = Path(directory)
    modules = _explained(directory)
    chosen = _pick_module(directory, modules, module)
    scorers = {name: _index(directory / "scores" / name).get(chosen, {}) for name in CLASSIFIER_SCORERS}
    out: dict[int, DelphiLatent] = {}
    for latent, path in sorted(modules[chosen].items()):
        explanation = read_explanation(path, f"{chosen}/{latent}")
        scores = {name: read_score(files[latent], name) for name, files in scorers.items() if latent in files}
        out[latent] = DelphiLatent(chosen, latent, explanation, scores)
    return out


def module_candidates(hookpoint: str) -> list[str]:
    """The delphi module names our hookpoint may have, as delphi writes them ('/' → '--'): the hookpoint itself
    (a base-model module path, e.g. MiniLM's `encoder.layer.3.output.dense`), then without its first part, the
    LM-head wrapper a causal LM's hookpoint starts with (`transformer.h.3.mlp` → `h.3.mlp`: delphi loads the base
    model with AutoModel; docs/ecosystem.md)."""
    names = [hookpoint, *([hookpoint.split(".", 1)[1]] if "." in hookpoint else [])]
    return [n.replace("/", "--") for n in names]


def module_for(directory: str | Path, hookpoint: str) -> str:
    """The module of delphi's output `directory` that is our `hookpoint` (the first of `module_candidates` there)."""
    directory = Path(directory)
    modules = _explained(directory)
    tried = module_candidates(hookpoint)
    for name in tried:
        if name in modules:
            return name
    have = ", ".join(sorted(modules)) or "none"
    raise DataError(f"{directory / 'explanations'}: no module for hookpoint {hookpoint!r} (tried {', '.join(tried)}; "
                    f"modules there: {have})")


RUN_NAME = "saeseeds-{config}-{seed}"
"""The `--name` of the delphi run of one configuration's seed (docs/ecosystem.md): `interpret --from-delphi DIR`
reads DIR/saeseeds-<config>-<seed>/ for every seed."""


def read_delphi_seeds(root: str | Path, config: str, hookpoint: str, seeds: list[str]) -> list[dict[int, DelphiLatent]]:
    """Per seed (in order), what delphi left for `config`'s `hookpoint` in `root`/saeseeds-<config>-<seed>/."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--from-delphi {root}: not a directory (give delphi's results/ folder)")
    out = []
    for seed in seeds:
        folder = root / RUN_NAME.format(config=config, seed=seed)
        if not folder.is_dir():
            raise DataError(f"--from-delphi {root}: no delphi output for {config} {seed} (expected the folder "
                            f"{folder.name}, the --name of docs/ecosystem.md's delphi command)")
        out.append(read_delphi(folder, module_for(folder, hookpoint)))
    return out


__all__ = ["RUN_NAME", "DelphiLatent", "DelphiScore", "module_candidates", "module_for", "read_delphi",
           "read_delphi_seeds", "read_explanation", "read_score"]
