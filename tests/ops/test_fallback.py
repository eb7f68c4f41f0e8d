"""Without the compiled extension the package still works: one clear warning, reference op."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_missing_extension_warns_once_and_runs_the_reference():
    code = textwrap.dedent("""
        import sys, warnings
        sys.modules["diffmd_fast._C"] = None  # makes `from . import _C` raise ImportError
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import diffmd_fast as dm
        msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(msgs) == 1 and "compiled extension is not built here" in msgs[0], msgs
        assert not dm.HAS_EXTENSION and not dm.ops.HAS_EXTENSION
        import torch
        batch = torch.tensor([0, 0, 0, 1, 1])
        g = dm.graph.complete_graph(batch)
        layer = dm.EGL(hidden=8, heads=2, ffn=8, backend="fused")
        x, v, h = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 8)
        out = layer(x, v, h, g)
        assert all(torch.isfinite(o).all() for o in out)
        assert dm.graph.radius_graph(x, batch, 10.0).num_edges == 8
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
