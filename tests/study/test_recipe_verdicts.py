"""The recipe verdicts ("more stable than the reference at no worse FVU"), tested across seeds on planted per-seed
numbers: holds, does not hold (FVU beyond the margin; stability not higher), and undetermined (too few seeds)."""

from __future__ import annotations

import pytest

from saeseeds.config.study import StudyConfig
from saeseeds.errors import ConfigError
from saeseeds.study.recipes import attach_verdicts, judge_recipes, seeds_for_holm


def _seeds(stability: list[float], fvu: list[float]) -> dict[str, list]:
    return {"seeds": list(range(len(stability))), "stability_shared": stability, "fvu": fvu}


def _judge(**recipes: dict[str, list]) -> dict:
    return judge_recipes(recipes, "topk", kind="shared", fvu_margin=0.01, alpha=0.05)


def test_higher_stability_in_every_seed_at_equal_fvu_holds_after_holm() -> None:
    base = [0.30, 0.32, 0.31, 0.29, 0.33, 0.30, 0.31, 0.32]
    fvu = [0.20] * 8
    v = _judge(topk=_seeds(base, fvu), stable=_seeds([b + 0.1 for b in base], [f + 0.005 for f in fvu]),
               same=_seeds([b + (0.01 if i % 2 else -0.01) for i, b in enumerate(base)], fvu))
    assert v["stable"]["holds"] is True and v["stable"]["p_value"] == pytest.approx(2 ** -8)
    assert v["stable"]["p_holm"] == pytest.approx(2 * 2 ** -8)  # Holm over the two recipes
    assert v["same"]["holds"] is False and "not higher" in v["same"]["reason"]
    rows = [{"recipe": "topk"}, {"recipe": "stable"}, {"recipe": "same"}]
    attach_verdicts(rows, v, "topk")
    assert [r["verdict"] for r in rows] == ["reference", "holds", "does not hold"]


def test_worse_fvu_beyond_the_margin_does_not_hold_whatever_the_stability() -> None:
    v = _judge(topk=_seeds([0.3] * 3, [0.2] * 3), worse=_seeds([0.9] * 3, [0.2, 0.25, 0.2]))
    assert v["worse"]["holds"] is False and "FVU above topk's + 0.01 in 1 of 3 seeds" in v["worse"]["reason"]


def test_too_few_seeds_are_undetermined_never_a_no() -> None:
    two = _judge(topk=_seeds([0.3] * 2, [0.2] * 2), r=_seeds([0.5] * 2, [0.2] * 2))
    assert two["r"]["holds"] is None and "needs ≥ 3" in two["r"]["reason"]
    three = _judge(topk=_seeds([0.3] * 3, [0.2] * 3), r=_seeds([0.5] * 3, [0.2] * 3))
    assert three["r"]["holds"] is None and "≥ 5 seeds" in three["r"]["reason"]  # 2^-3 > 0.05
    assert seeds_for_holm(7, 0.05) == 8


def test_seeds_are_paired_by_id_not_by_position() -> None:
    ref = {"seeds": [0, 1, 2, 3, 4], "stability_shared": [0.1, 0.2, 0.3, 0.4, 0.5], "fvu": [0.2] * 5}
    rec = {"seeds": [4, 3, 2, 1, 0], "stability_shared": [0.55, 0.45, 0.35, 0.25, 0.15], "fvu": [0.2] * 5}
    v = judge_recipes({"topk": ref, "r": rec}, "topk", kind="shared", fvu_margin=0.01, alpha=0.05)
    assert v["r"]["delta_stability"] == pytest.approx([0.05] * 5) and v["r"]["holds"] is True


@pytest.mark.parametrize(("fields", "message"), [
    ({"pooling": True}, 'study.pooling = True is read only by a recipe comparison'),
    ({"design": "recipes", "architecture": ["topk"]}, "study.architecture = ['topk'] is not an axis"),
    ({"design": "recipes", "k": [8, 16]}, "study.k = [8, 16] would make a recipe comparison a grid"),
    ({"design": "recipes", "alpha": 1.5}, "study.alpha = 1.5"),
])
def test_recipe_fields_are_validated_in_one_line(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        StudyConfig(**fields).validate()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_recipe_off_the_matched_l0_is_undetermined_not_judged_on_fvu() -> None:
    """A sparser recipe (L0 4 against 16) would lose on FVU for its sparsity alone: no verdict, the reason names it;
    within ±20% the verdict is given as usual."""
    ref = {**_seeds([0.3] * 8, [0.2] * 8), "l0": [16.0] * 8}
    sparse = {**_seeds([0.9] * 8, [0.3] * 8), "l0": [4.0] * 8}
    close = {**_seeds([0.9] * 8, [0.2] * 8), "l0": [17.0] * 8}
    v = _judge(topk=ref, sparse=sparse, close=close)
    assert v["sparse"]["holds"] is None and "not at matched L0 (L0 4 vs topk's 16" in v["sparse"]["reason"]
    assert v["close"]["holds"] is True
