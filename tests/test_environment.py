"""Every installed package imports: the venv holds nothing that breaks whoever imports it.

``fairseq-fixed`` declares ``torchaudio``, whose PyPI build links CUDA libraries and fails to load
beside the CPU torch; anything importing it (``transformers`` probes for it) then broke. The
install now leaves it out (``make install`` installs ``fairseq-fixed`` with ``--no-deps``,
its real dependencies pinned in ``requirements.txt``). This test imports every top-level module
of every distribution in the interpreter's environment, in a fresh interpreter, so a broken
package (or a workaround such as ``sys.modules["torchaudio"] = None``) cannot hide.
"""

import json
import subprocess
import sys
from pathlib import Path

# Runs in a fresh interpreter: {distribution: [top-level module, ...]} for every installed
# distribution, from top_level.txt when it has one, else from the files it installed.
LIST_MODULES = r"""
import json, sys
from importlib import metadata

def top_level(dist):
    text = dist.read_text("top_level.txt")
    if text:  # some list paths too ("sentencepiece/_version"): keep the importable names
        return {name for name in text.split() if name.isidentifier()}
    names = set()
    for path in dist.files or ():
        parts = path.parts
        if not parts or parts[0].startswith("..") or parts[0].endswith((".dist-info", ".egg-info", ".data")):
            continue
        if len(parts) > 1 and parts[-1] == "__init__.py":
            names.add(parts[0])  # a package
        elif len(parts) == 1 and parts[0].endswith(".py"):
            names.add(parts[0][:-3])  # a module
        elif len(parts) == 1 and parts[0].endswith((".so", ".pyd")):
            names.add(parts[0].split(".")[0])  # an extension module
    return {n for n in names if n.isidentifier()}

out = {}
for dist in metadata.distributions():
    out[dist.metadata["Name"]] = sorted(top_level(dist))
print(json.dumps(out))
"""

# Runs in a fresh interpreter: imports each module given on stdin, prints the failures as JSON.
# Order as users import them: setuptools before anything imports the stdlib's distutils (its
# own assertion otherwise), torch before the torch extensions that Fairseq ships (they link
# torch's libraries, loaded by ``import torch``), then the rest alphabetically.
IMPORT_ALL = r"""
import importlib, json, sys, traceback, warnings
warnings.simplefilter("ignore")
FIRST = ["_distutils_hack", "setuptools", "torch"]
names = json.load(sys.stdin)
failed = {}
for name in [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]:
    try:
        importlib.import_module(name)
    except BaseException as e:  # noqa: BLE001  (SystemExit included: a module must not exit)
        lines = traceback.format_exception_only(type(e), e)
        failed[name] = lines[-1].strip()
print("\n" + json.dumps(failed))
"""


def _fresh(code: str, stdin: str = "") -> str:
    result = subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True, text=True,
                            timeout=600, cwd=Path(sys.executable).parent)  # not the repo: no local shadows
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_every_installed_distribution_imports():
    modules = json.loads(_fresh(LIST_MODULES))
    names = sorted({m for mods in modules.values() for m in mods})
    # the packages this project imports must be among them (the walk found the environment)
    for needed in ("fairseq", "fairseq_cli", "torch", "transformers", "sentencepiece", "rouge_score",
                   "fairseq_poolingformer", "natural_questions"):
        assert needed in names, f"{needed} not found among the installed top-level modules"
    failed = json.loads(_fresh(IMPORT_ALL, json.dumps(names)))
    owners = {m: d for d, mods in modules.items() for m in mods}
    assert not failed, "installed but does not import:\n" + "\n".join(
        f"  {name} (distribution {owners.get(name)}): {why}" for name, why in sorted(failed.items()))


def test_no_module_hides_a_broken_import():
    """No ``sys.modules[...] = None`` workaround left in the project (it hid the broken torchaudio)."""
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for path in root.rglob("*.py"):
        if ".venv" in path.parts or path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8")
        for i, line in enumerate(text.splitlines(), 1):
            if "sys.modules" in line and "None" in line and ("setdefault" in line or "] =" in line):
                offenders.append(f"{path.relative_to(root)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
