"""The package's layering: a subpackage imports only from subpackages below it (the import graph stays a stack)."""
from __future__ import annotations

import ast
from pathlib import Path

import diffmd_fast

LAYERS = ["config", "testing", "data", "ops", "evaluation", "valence", "nn", "diffusion", "dynamics", "training", "ase",
          "baselines", "experiments", "benchmarks", "cli"]
ROOT = Path(diffmd_fast.__file__).parent


def _imports(path: Path, package: list[str]):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
                names = [base + [a.name] for a in node.names] if not node.module else [base]
            elif node.module and node.module.startswith("diffmd_fast"):
                names = [node.module.split(".")]
            else:
                continue
            yield from names
        elif isinstance(node, ast.Import):
            yield from (a.name.split(".") for a in node.names if a.name.startswith("diffmd_fast."))


def test_lower_layers_never_import_higher_ones():
    bad = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("").parts
        package = list(rel[:-1]) if rel[-1] != "__init__" else list(rel[:-1])
        own = rel[1] if len(rel) > 1 else None
        if own in (None, "__init__", "__main__") or own not in LAYERS:
            continue
        for target in _imports(path, package):
            if len(target) < 2 or target[0] != "diffmd_fast" or target[1] in ("_C", own):
                continue
            if target[1] in LAYERS and LAYERS.index(target[1]) > LAYERS.index(own):
                bad.append(f"{'/'.join(rel)} imports diffmd_fast.{target[1]}")
    assert not bad, "\n".join(bad)


def test_every_module_belongs_to_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
            if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert tops - {"__init__", "__main__"} <= set(LAYERS), sorted(tops - set(LAYERS))


def _top_level_names(path: Path) -> set[str]:
    """The functions and classes ``path`` defines at module level."""
    return {node.name for node in ast.parse(path.read_text()).body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def test_the_valence_force_field_has_one_home():
    """Its topology, fit, prior and coverage are defined in valence/ and nowhere else."""
    home = ROOT / "valence"
    ours = set().union(*(_top_level_names(p) for p in home.glob("*.py")))
    assert {"BondPrior", "valence_statistics", "force_matched", "cover", "with_covalent_bonds",
            "atom_environments", "bond_dihedrals", "valence_types"} <= ours
    public = {name for name in ours if not name.startswith("_")}
    elsewhere = [f"{p.relative_to(ROOT)} defines {sorted(public & _top_level_names(p))}"
                 for p in ROOT.rglob("*.py") if home not in p.parents and public & _top_level_names(p)]
    assert not elsewhere, "\n".join(elsewhere)


def test_atomic_masses_come_from_one_module():
    """Only data/elements.py reads ASE's mass table; the dynamics re-export its torch face."""
    from diffmd_fast.data import elements
    from diffmd_fast.dynamics import physics

    readers = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "ase.data" and \
                    any(a.name == "atomic_masses" for a in node.names):
                readers.append(str(path.relative_to(ROOT)))
    assert readers == ["data/elements.py"], readers
    assert physics.masses_of is elements.masses_of
