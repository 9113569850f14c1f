"""Reading EleutherAI delphi's output back (the format of delphi's main branch, 2025: explanations/<module>_latent<N>.txt
holding a JSON string; scores/<scorer>/<module>_latent<N>.txt holding a JSON list of ClassifierOutput records with
str_tokens, activations, distance, activating, prediction, probability, correct). The files are written here from
that documented format."""

from __future__ import annotations

import json
import math

import pytest

from saeseeds.errors import DataError
from saeseeds.interpret.delphi import read_delphi

MODULE = "encoder.layer.3.output.dense"


def _record(activating, prediction, probability=None):
    """One delphi ClassifierOutput record as delphi's orjson writes it."""
    return {"str_tokens": [" the", " cat"], "activations": [0.0, 1.5 if activating else 0.0], "distance": 0,
            "activating": activating, "prediction": prediction, "probability": probability,
            "correct": None if prediction is None else prediction == activating}


def _write(root, module, latent, explanation, scores):
    """Write one latent's explanation and score files the way delphi's pipeline does."""
    (root / "explanations").mkdir(parents=True, exist_ok=True)
    (root / "explanations" / f"{module}_latent{latent}.txt").write_text(json.dumps(explanation))
    for scorer, records in scores.items():
        (root / "scores" / scorer).mkdir(parents=True, exist_ok=True)
        (root / "scores" / scorer / f"{module}_latent{latent}.txt").write_text(json.dumps(records))


DETECTION = [_record(True, True, 0.9), _record(True, True, 0.8), _record(True, False, 0.3),
             _record(False, False, 0.2), _record(False, False, 0.1), _record(False, True, 0.7)]


def test_explanations_and_scores_are_read_with_their_metrics(tmp_path):
    fuzz = [_record(True, True), _record(True, True), _record(False, True), _record(False, False),
            _record(True, None)]
    _write(tmp_path, MODULE, 12, "Greetings such as hello", {"detection": DETECTION, "fuzz": fuzz})
    _write(tmp_path, MODULE, 3, "Question marks", {"detection": DETECTION[:3] + DETECTION[3:4]})
    latents = read_delphi(tmp_path)
    assert sorted(latents) == [3, 12]
    latent = latents[12]
    assert latent.module == MODULE and latent.latent == 12
    assert latent.explanation.text == "Greetings such as hello" and latent.explanation.key == f"{MODULE}/12"
    detection = latent.scores["detection"]
    assert (detection.n, detection.n_failed) == (6, 0)
    assert detection.balanced_accuracy == pytest.approx((2 / 3 + 2 / 3) / 2)  # TPR 2/3, TNR 2/3
    assert detection.auroc == pytest.approx(8 / 9) and detection.auroc_source == "probability"
    fuzz_score = latent.scores["fuzz"]
    assert (fuzz_score.n, fuzz_score.n_failed) == (5, 1)  # an unparsed answer is left out
    assert fuzz_score.balanced_accuracy == pytest.approx((1.0 + 0.5) / 2)
    assert fuzz_score.auroc_source == "prediction" and fuzz_score.auroc == pytest.approx(fuzz_score.balanced_accuracy)
    assert set(latents[3].scores) == {"detection"}


def test_scorers_that_are_not_classifications_are_left_alone(tmp_path):
    _write(tmp_path, MODULE, 0, "x", {"detection": DETECTION,
                                      "embedding": [{"text": "the cat", "distance": 0, "similarity": 0.4}]})
    assert set(read_delphi(tmp_path)[0].scores) == {"detection"}


def test_one_class_only_gives_nan_not_a_number_made_up(tmp_path):
    _write(tmp_path, MODULE, 1, "x", {"detection": [_record(True, True, 0.9), _record(True, False, 0.4)]})
    score = read_delphi(tmp_path, MODULE)[1].scores["detection"]
    assert math.isnan(score.balanced_accuracy) and math.isnan(score.auroc)


def test_the_module_is_chosen_by_name_and_slashes_are_delphi_s_double_dash(tmp_path):
    _write(tmp_path, "layers.5/mlp".replace("/", "--"), 0, "a", {})
    _write(tmp_path, "layers.6", 0, "b", {})
    assert read_delphi(tmp_path, "layers.5/mlp")[0].explanation.text == "a"
    assert read_delphi(tmp_path, "layers.6")[0].explanation.text == "b"
    with pytest.raises(DataError, match=r"name the module to read \(modules there: layers.5--mlp, layers.6\)"):
        read_delphi(tmp_path)
    with pytest.raises(DataError, match="no files for module 'layers.7'"):
        read_delphi(tmp_path, "layers.7")


def test_a_list_of_explanations_gives_the_first(tmp_path):
    _write(tmp_path, MODULE, 4, ["best", "second"], {})
    explanation = read_delphi(tmp_path)[4].explanation
    assert explanation.text == "best" and explanation.detail["alternatives"] == ["second"]


@pytest.mark.parametrize("content,words", [
    ("not json", "not a delphi JSON file"),
    ('{"a": 1}', "a JSON list of records"),
    ('[{"prediction": true}]', "record 0 has no 'activating' field"),
    ('[{"activating": true, "prediction": "yes"}]', "record 0: 'prediction' must be true/false or null"),
    ('[{"activating": true, "prediction": true, "probability": 1.5}]', "'probability' must be in \\[0, 1\\]"),
])
def test_a_broken_score_file_is_one_line_naming_it(tmp_path, content, words):
    _write(tmp_path, MODULE, 0, "x", {"detection": []})
    path = tmp_path / "scores" / "detection" / f"{MODULE}_latent0.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=words) as err:
        read_delphi(tmp_path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_not_a_delphi_directory(tmp_path):
    with pytest.raises(DataError, match="no explanations/ folder"):
        read_delphi(tmp_path)
    _write(tmp_path, MODULE, 0, 7, {})
    with pytest.raises(DataError, match="a delphi explanation is a JSON string, found int"):
        read_delphi(tmp_path)
