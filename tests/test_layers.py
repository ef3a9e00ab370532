"""The tree is the architecture: each layer imports only the layers above it (ARCHITECTURE.md), the
engine and the trial processes stay light, and the output vocabulary is defined once (outputs.py)."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sspa_ray import outputs

REPO = Path(__file__).resolve().parents[1]
# ARCHITECTURE.md's layer list, top to bottom; `cli/` installs as sspa_ray.cli.
LAYERS = ["errors", "suggest", "registry", "outputs", "version", "rundir", "config", "defaults", "labels", "data", "model",
          "engine", "specs",
          "report", "tracking", "orchestration", "cli"]


def _modules():
    """(file, its layer, the sspa_ray modules it imports anywhere in its body)."""
    for root, package in ((REPO / "sspa_ray", "sspa_ray"), (REPO / "cli", "sspa_ray.cli")):
        for path in sorted(root.rglob("*.py")):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            layer = ".".join(parts).split(".")[1] if len(".".join(parts).split(".")) > 1 else None
            if layer in (None, "__init__"):
                continue
            imported = []
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.append(node.module)
                elif isinstance(node, ast.Import):
                    imported += [alias.name for alias in node.names]
            yield path, layer, [m for m in imported if m.startswith("sspa_ray.")]


def test_each_layer_imports_only_the_layers_above_it():
    against = []
    for path, layer, imported in _modules():
        assert layer in LAYERS, f"{path}: layer {layer} is missing from ARCHITECTURE.md's list"
        for module in imported:
            other = module.split(".")[1]
            if LAYERS.index(other) > LAYERS.index(layer):
                against.append(f"{path.relative_to(REPO)} imports {module}")
    assert not against, against


def test_architecture_md_lists_the_layers_in_this_order():
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    tree = text[text.index("```"):text.index("```", text.index("```") + 3)]
    named = [line.split()[0].rstrip("/").removesuffix(".py") for line in tree.splitlines()[2:]
             if line.startswith("  ") and not line.startswith("   ")]
    assert [n for n in named if n in LAYERS] == [n for n in LAYERS if n != "cli"]


def _loaded_after(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return set(json.loads(out.stdout))


def test_the_engine_loads_no_ray_no_scipy_optimize_and_no_matplotlib():
    loaded = _loaded_after("sspa_ray.engine.setup")  # fit's module (sspa_ray.engine loads it on first use)
    assert not {m for m in loaded if m.split(".")[0] in ("ray", "matplotlib")}
    assert "scipy.optimize" not in loaded


def test_the_data_model_and_engine_layers_import_no_matplotlib():
    # Drawing is report/'s job (Figure 5's gallery included); a trial process imports these layers.
    drawing = []
    for layer in ("data", "model", "engine"):
        for path in sorted((REPO / "sspa_ray" / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                drawing += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "matplotlib"]
    assert not drawing, drawing


def test_a_trial_process_loads_no_matplotlib():
    loaded = _loaded_after("sspa_ray.orchestration.trial")
    assert "ray" in loaded and not {m for m in loaded if m.split(".")[0] == "matplotlib"}


def test_a_sweeps_driver_and_bad_input_load_no_torch(tmp_path):
    # torch costs 1.5 s of CPU to load. The trial processes need it; the driver only to build a
    # built-in backbone (or through its tensorboard tracker), and a command refused for bad input never.
    assert not {m for m in _loaded_after("sspa_ray.orchestration.tuner") if m.split(".")[0] == "torch"}
    code = ("import sys; from sspa_ray.cli.main import cli\n"
            "try:\n    cli(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print(e.code, 'torch' in sys.modules)\n")
    for argv in (["train", "--target", "fer2013", "--out", str(tmp_path / "r")],
                 ["train", "--out", str(tmp_path / "r"), "--set", "pam.alpah=3"]):
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO)
        assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr


def test_a_drivers_trackers_load_neither_torch_nor_mlflow(tmp_path):
    # tensorboardX would load torch (1.8 s of CPU) and Tune's count of the callbacks for its telemetry
    # MLflow (0.9 s), in every driver. The TensorBoard writer still writes.
    code = ("import sys, types\n"
            "from ray.air._internal import usage\n"
            "from sspa_ray.orchestration.monitoring import logger_callbacks\n"
            "callbacks = logger_callbacks(types.SimpleNamespace(loggers=['tensorboard', 'csv']))\n"
            "usage.tag_callbacks(callbacks)\n"
            "from tensorboardX import SummaryWriter\n"
            "with SummaryWriter(sys.argv[1]) as writer:\n    writer.add_scalar('macro_f1', 0.5, 1)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'mlflow', 'wandb'}))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert proc.stdout.split() == ["[]"], proc.stdout + proc.stderr
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1


def test_the_output_vocabulary_is_defined_once():
    # File names, statuses, stages, verdicts and the metric tuple appear as literals only in outputs.py.
    words = {v for k, v in vars(outputs).items() if k.isupper() and isinstance(v, str) and v not in outputs.METRICS}
    words |= {s.value for s in outputs.Status} | {s.value for s in outputs.Stage} | {v.value for v in outputs.Verdict}
    found = []
    for root in ("sspa_ray", "cli"):
        for path in sorted((REPO / root).rglob("*.py")):
            if path.name == "outputs.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Tuple) and [getattr(e, "value", None) for e in node.elts] == list(outputs.METRICS):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: the metric tuple")
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in words:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not found, found


def _top_level_definitions() -> dict[str, list[str]]:
    """Each name a module of sspa_ray/ defines at its top level (def, class, assignment): where."""
    where: dict[str, list[str]] = {}
    for path in sorted((REPO / "sspa_ray").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            else:
                names = []
            for name in names:
                where.setdefault(name, []).append(str(path.relative_to(REPO)))
    return where


# Names that were once defined in two or three modules with different meanings; each now has one
# definition, and the meanings that differed got names of their own (PRETRAINABLE_BACKBONES,
# HISTORY_SERIES / SELECTION_CURVES / RELABEL_CURVES, RESULT_COLUMNS / ANNOTATION_COLUMNS,
# TABLE_FORMATS / FIGURE_FORMATS, config_value beside data.augment's normalize).
DEFINED_ONCE = ("BACKBONES", "METHODS", "PRETRAINABLE_BACKBONES", "finite_number", "value_text", "format_value",
                "draw_gallery", "Layout", "Word", "normalize", "identity")
# The names those duplicates had; none may come back.
RETIRED = ("_finite", "_fmt", "_text_of", "LAYOUTS", "_Word", "SERIES", "COLUMNS", "FORMATS")
# The names a family of modules shares by design, with one meaning in each: a dataset module's
# layout (data/rafdb.py, affectnet.py, caers.py) and a cache's version, recipe and builder (the
# synthetic benchmark, the pretrained backbone, DCJT's annotator).
SHARED_BY_DESIGN = {"SPLITS", "IMAGE_DIR", "OFFICIAL_SIZES", "read", "VERSION", "recipe_for", "ensure"}


def test_each_shared_name_is_defined_once():
    where = _top_level_definitions()
    assert {name: where.get(name, []) for name in DEFINED_ONCE if len(where.get(name, [])) != 1} == {}
    assert {name: where[name] for name in RETIRED if name in where} == {}


def test_no_other_top_level_name_is_defined_in_two_modules():
    # A second module with the same name, public or private, is a second meaning to keep apart: name it for its own.
    twice = {name: files for name, files in _top_level_definitions().items()
             if len(files) > 1 and name not in SHARED_BY_DESIGN and not name.startswith("__")}
    assert twice == {}


def _register(declared: str, name: str) -> None:
    """Register `name` in the registry that config's tuple `declared` names, as a method or backbone file would."""
    from sspa_ray.engine.methods import register_method
    from sspa_ray.model import register

    if declared == "METHODS":
        register_method(type("Undeclared", (), {"name": name}))
    else:
        register(name)(len)


@pytest.mark.parametrize("package, declared, key, name, add", [
    ("sspa_ray.engine.methods", "METHODS", "method.name", "mixup",
     "sspa_ray/engine/methods/mixup.py with a @register_method class whose name is 'mixup', imported in "
     "sspa_ray/engine/methods/__init__.py"),
    ("sspa_ray.model", "BACKBONES", "model.backbone", "vit",
     "sspa_ray/model/vit.py with a @register('vit') builder, imported at the end of sspa_ray/model/__init__.py"),
])
def test_the_registries_hold_config_names_to_account_both_ways(package, declared, key, name, add):
    # config.py writes the names: registering one it lacks is refused ...
    with pytest.raises(ValueError, match=f"^{key} '{name}' is not declared: add it to {declared} in sspa_ray/config.py"):
        _register(declared, name)
    # ... and so is importing the package while a declared name has no file.
    code = f"import sspa_ray.config as c; c.{declared} += ('{name}',); import {package}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == (f"ImportError: {key} '{name}' is declared in sspa_ray/config.py's {declared} "
                                           f"but nothing registers it: add {add}")


def test_the_epoch_record_declares_every_figure_and_gauge():
    # The metrics, SSM's and SCN's figures and the live gauges are EpochRecord keys (outputs.py).
    from sspa_ray.orchestration.progress import GAUGES

    keys = set(outputs.EPOCH_KEYS)
    assert {*outputs.METRICS, *outputs.SELECTION_FIGURES, *outputs.RELABEL_FIGURES, *outputs.DCJT_FIGURES, *GAUGES} <= keys
    assert outputs.SELECTION_COLUMNS == ("path", "source", "label", "clean")
