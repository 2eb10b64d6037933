"""The package's layering, read from every module's imports (ast).

The layer order, bottom to top (a module imports only from its own layer or the ones below):

    core                    per-atom state, gradient, energy-term base, model, reflections,
                            selections, ADP conventions, errors, L-BFGS
    io, xtal                files in and out; crystallographic math
    restraints, targets     restraint terms and their topology; X-ray, density, map terms
    refinement              drivers: energy sum, weighting, macro-cycles, kicking, real space
    api, batch, examples, session, macro   what scripts and the CLI call (macro: MAIN .cmds parsing;
                            batch: many refinements on a Dask cluster)
    cli, demo, __main__     the commands

and files are read only in ``io/``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import kickref

LAYERS = [("core",), ("io", "xtal"), ("restraints", "targets"), ("refinement",),
          ("api", "batch", "examples", "session", "macro", "__init__"), ("cli", "demo", "__main__")]
LEVEL = {name: k for k, names in enumerate(LAYERS) for name in names}
# calls that read files: allowed in io/ only
READERS = {"read_structure", "read_mtz_file", "read_ccp4_map", "read_monomer_lib", "read_cif_gz",
           "read_pdb", "read_file", "read_mmcif", "read", "read_file", "read_ccp4_mask"}


def _top(module: str) -> str:
    """Top-level part below ``kickref`` of a dotted module name ('kickref.xtal.fmodel' → 'xtal')."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1 and len(parts) > 2:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool):
    """(line, imported absolute module) for every kickref import in the tree (nested too)."""
    pkg = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
                names += [f"{node.module}.{a.name}" for a in node.names] if node.module == "kickref" else []
            for t in names:
                if t.startswith("kickref"):
                    yield node.lineno, t
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("kickref"):
                    yield node.lineno, a.name


def _dotted(node) -> str:
    """'gemmi.cif.read' for the call target ``gemmi.cif.read`` ('' when not a plain dotted name)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    return ".".join([node.id] + parts[::-1])


def layer_violations(root: Path) -> list[str]:
    """Imports from a higher layer, and file reading outside io/, in the package at ``root``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(root, path)
        here = _top(module)
        if here not in LEVEL:
            out.append(f"{path.relative_to(root)}: not in any layer ({here})")
            continue
        tree = ast.parse(path.read_text(), str(path))
        for line, target in _imports(tree, module, path.name == "__init__.py"):
            there = _top(target)
            if there == "__init__" and target == "kickref" and here != "__init__":
                there = "__init__"
            if there in LEVEL and LEVEL[there] > LEVEL[here]:
                out.append(f"{path.relative_to(root)}:{line}: {here} imports {target} ({there})")
        if here != "io":
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    name = _dotted(node.func)
                    if name.startswith("gemmi.") and name.rsplit(".", 1)[-1] in READERS or name == "open":
                        out.append(f"{path.relative_to(root)}:{node.lineno}: reads a file ({name}) outside io/")
    return out


def test_no_import_from_a_higher_layer():
    root = Path(kickref.__file__).parent
    bad = layer_violations(root)
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_checker_sees_a_back_edge(tmp_path):
    """The checker itself: a module of xtal/ importing from refinement/ is reported."""
    pkg = tmp_path / "kickref"
    (pkg / "xtal").mkdir(parents=True)
    (pkg / "refinement").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "xtal" / "__init__.py").write_text("")
    (pkg / "refinement" / "__init__.py").write_text("")
    (pkg / "refinement" / "energy.py").write_text("X = 1\n")
    (pkg / "xtal" / "fmodel.py").write_text("def f():\n    from ..refinement.energy import X\n    return X\n")
    (pkg / "xtal" / "maps.py").write_text("import gemmi\nm = gemmi.read_ccp4_map('x')\n")
    (pkg / "refinement" / "lib.py").write_text("import gemmi\nd = gemmi.cif.read('x')\nf = open('y')\n")
    bad = layer_violations(pkg)
    assert any("xtal/fmodel.py:2: xtal imports kickref.refinement.energy" in b for b in bad), bad
    assert any("xtal/maps.py:2: reads a file" in b for b in bad), bad
    assert any("refinement/lib.py:2: reads a file (gemmi.cif.read)" in b for b in bad), bad
    assert any("refinement/lib.py:3: reads a file (open)" in b for b in bad), bad
    assert len(bad) == 4
