"""The journal keeps every finished latent; a torn last line (a kill mid-write) is skipped, other settings start
another journal."""

from __future__ import annotations

import math
from pathlib import Path

from saeseeds.interpret.journal import Journal


def test_a_torn_line_is_skipped_and_other_settings_use_another_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path, {"explainer": "tokens", "latents": 40})
    journal.append({"key": "s/seed0/1", "detection_auroc": 0.8})
    journal.append({"key": "s/seed0/2", "detection_auroc": math.nan})
    with journal.path.open("a") as f:
        f.write('{"key": "s/seed0/3", "detection_au')
    done = journal.load()
    assert set(done) == {"s/seed0/1", "s/seed0/2"} and done["s/seed0/2"]["detection_auroc"] is None
    assert Journal(tmp_path, {"explainer": "tokens", "latents": 20}).load() == {}
    journal.append({"key": "s/seed0/4"})  # appending after a torn line still reads back
    assert "s/seed0/4" in Journal(tmp_path, {"explainer": "tokens", "latents": 40}).load()
