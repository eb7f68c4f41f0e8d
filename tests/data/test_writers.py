"""data/writers.py: strict JSON for the files benchmarks and training write."""
import json

import numpy as np

from diffmd_fast.data.writers import json_text


def test_json_text_writes_figures_not_measured_as_null():
    """Strict JSON for benchmark files: NaN and infinities (a figure not measured) become null, nested too."""
    text = json_text({"a": float("nan"), "b": [1.5, float("inf"), {"c": -float("inf")}], "d": np.float64("nan"), "e": 2})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.5, None, {"c": None}], "d": None, "e": 2}
