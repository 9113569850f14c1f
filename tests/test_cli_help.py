"""`--help` explains the CLI: every config field of every section is listed with type, default and docstring."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from saeseeds.cli import main
from saeseeds.config import RunConfig
from saeseeds.config.help import field_docs


def help_text(verb: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def config_sections() -> list[tuple[str, type]]:
    """(flag prefix, dataclass) of every section of RunConfig, found by walking its fields."""
    hints = typing.get_type_hints(RunConfig)
    out = []
    for f in dataclasses.fields(RunConfig):
        tp = hints[f.name]
        cls = typing.get_args(tp)[0] if typing.get_origin(tp) is list else tp
        out.append(("sae" if f.name == "saes" else f.name, cls))
    return out


def test_train_help_lists_every_config_field_with_default_and_doc(capsys: pytest.CaptureFixture[str]) -> None:
    lines = help_text("train", capsys).splitlines()
    sections = config_sections()
    assert {prefix for prefix, _ in sections} >= {"data", "train", "sae", "lm", "synthetic"}
    missing, undocumented = [], []
    for prefix, cls in sections:
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            flag = f"--{prefix}.{f.name} "
            where = [i for i, line in enumerate(lines) if line.strip().startswith(flag)]
            if not where:
                missing.append(flag)
                continue
            header, doc = lines[where[0]], lines[where[0] + 1].strip()
            assert "(default: " in header, header
            if not docs.get(f.name) or doc == "(undocumented)":
                undocumented.append(flag.strip())
            else:
                assert doc.split()[0] in docs[f.name], (flag, doc)
    assert missing == [], f"fields missing from train --help: {missing}"
    assert undocumented == [], f"config fields without a docstring (add one below the field): {undocumented}"


def test_defaults_and_types_are_rendered(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text("train", capsys)
    assert "--train.seeds list[int] (comma separated)  (default: 0,1,2)" in text
    assert "--train.lr_decay linear|cosine|constant  (default: linear)" in text
    assert "--train.log_every int  (default: 0)" in text
    assert "--data.path str  (default: '')" in text


@pytest.mark.parametrize("verb", ["cache", "synthetic", "demo"])
def test_other_verbs_with_overrides_list_the_fields_too(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(verb, capsys)
    assert "--train.num_tokens int" in text and "--quiet" in text


def test_option_defaults_are_shown_and_usage_prefix_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(help_text("compare", capsys).split())  # argparse wraps lines
    assert "(default: 262144)" in text  # --max-tokens
    assert "`saeseeds compare" not in text and "Align SAEs across seeds" in text
    analyze = " ".join(help_text("analyze", capsys).split())
    assert "(default: 200)" in analyze and "(default: 0.05)" in analyze  # --n-random, --alpha


def test_study_help_lists_the_study_table_too(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    from saeseeds.config.help import field_docs
    from saeseeds.config.study import StudyConfig

    with pytest.raises(SystemExit):
        main(["study", "--help"])
    text = capsys.readouterr().out
    assert "[study]" in text and "--train.lr" in text
    docs = field_docs(StudyConfig)
    for f in dataclasses.fields(StudyConfig):
        assert f"--study.{f.name} " in text, f.name
        assert docs.get(f.name), f"[study] {f.name} has no docstring"
