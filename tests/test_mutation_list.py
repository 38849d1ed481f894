"""The mutation list (tests/mutation.py, run on demand) stays current: every mutant's target
text is still in its file, so a refactor cannot silently turn a mutant stale.  (The stale
``model.free_energy_sign``, left behind when the free energy moved to the compiled entropy
value, is what this test was written for; the tool itself only reports stale mutants when it
is run.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mutants():
    path = ROOT / "tests" / "mutation.py"
    spec = importlib.util.spec_from_file_location("dlnsim_mutation_list", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.MUTANTS


def test_every_mutant_targets_text_that_exists_and_differs():
    mutants = _mutants()
    assert len(mutants) >= 90
    ids = [m.id for m in mutants]
    assert len(ids) == len(set(ids)), "repeated mutant ids"
    stale = []
    for m in mutants:
        text = (ROOT / m.file).read_text()
        if text.count(m.old) <= m.nth or m.old == m.new:
            stale.append(m.id)
    assert not stale, f"mutants whose target text is gone (update tests/mutation.py): {stale}"
