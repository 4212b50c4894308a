"""The sdist is the whole project: its own tests collect and run from it, and LICENSE, lectures and docs come with it.

The sdist is built offline (``python -m build --sdist --no-isolation``: the dev extra brings build and a
setuptools within pyproject's bounds) from a copy of this folder holding some clutter a working tree gathers,
then its file list is compared with the files of the tree.
"""
import ast
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What never belongs in the copy built from: version control, environments, build output, downloads, runs.
NOT_COPIED = {".git", ".venv", "venv", "build", "dist", "runs", "__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
# Clutter planted in the copy: none of it may be shipped.
CLUTTER = ["tests/__pycache__/conftest.cpython-311.pyc", "notebooks/.ipynb_checkpoints/01-checkpoint.ipynb",
           "data/cifar-10-batches-py/data_batch_1", "data/cifar-10-python.tar.gz", "runs/quick/checkpoint.npz"]


def _ignore(folder, names):
    if Path(folder).resolve() == ROOT / "data":     # downloaded datasets: only the folder's README is project
        return [name for name in names if name != "README.md"]
    return [name for name in names if name in NOT_COPIED or name.endswith(".egg-info")]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """(names in the sdist relative to its top folder, the unpacked folder)."""
    pytest.importorskip("build", reason="the packaging test needs `build` (in the dev extra)")
    pytest.importorskip("setuptools", reason="the packaging test needs setuptools, the build backend (dev extra)")
    work = tmp_path_factory.mktemp("sdist")
    tree = work / "tree"
    shutil.copytree(ROOT, tree, ignore=_ignore)
    for name in CLUTTER:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(b"clutter")
    built = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(work / "dist"),
                            str(tree)], capture_output=True, text=True)
    assert built.returncode == 0, f"python -m build --sdist failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    (archive,) = (work / "dist").glob("scratchnet-*.tar.gz")
    with tarfile.open(archive) as tar:
        members = [m.name for m in tar.getmembers() if m.isfile()]
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}   # the filter: Python 3.10.12 and later
        tar.extractall(work / "unpacked", **safe)
    top = members[0].split("/")[0]
    return {name.split("/", 1)[1] for name in members}, work / "unpacked" / top


def tree_files(*patterns):
    found = {str(path.relative_to(ROOT)) for pattern in patterns for path in ROOT.glob(pattern) if path.is_file()}
    return {name for name in found if not set(Path(name).parts) & NOT_COPIED}


def test_the_sdist_ships_every_test_module_and_every_module_the_tests_import(sdist):
    shipped, _ = sdist
    test_modules = tree_files("tests/*.py")
    assert "tests/conftest.py" in test_modules
    local = {Path(name).stem for name in test_modules}
    imported = set()
    for name in test_modules:
        for node in ast.walk(ast.parse((ROOT / name).read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    helpers = {f"tests/{stem}.py" for stem in imported & local}
    assert {"tests/op_cases.py", "tests/cifar_fixtures.py"} <= helpers
    missing = (test_modules | helpers | tree_files("scratchnet/**/*.py")) - shipped
    assert not missing, f"not in the sdist: {sorted(missing)}"


def test_the_sdist_ships_license_lectures_and_docs(sdist):
    shipped, _ = sdist
    expected = tree_files("LICENSE", "README.md", "pyproject.toml", "MANIFEST.in", "data/README.md",
                          "notebooks/*.ipynb", "docs/**/*", "tools/*.py")
    assert {"LICENSE", "docs/parity.md"} <= expected and len(tree_files("notebooks/*.ipynb")) >= 7
    missing = expected - shipped
    assert not missing, f"not in the sdist: {sorted(missing)}"


def test_the_sdist_ships_no_clutter(sdist):
    shipped, _ = sdist
    clutter = {name for name in shipped if name in CLUTTER or name.endswith(".pyc")
               or name.startswith(("data/cifar", "runs/")) or ".ipynb_checkpoints" in name}
    assert not clutter, f"shipped by mistake: {sorted(clutter)}"


def test_the_license_metadata_is_the_pep_639_form(sdist):
    _, unpacked = sdist
    metadata = (unpacked / "PKG-INFO").read_text().split("\n\n")[0].splitlines()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    assert not [line for line in metadata if line.startswith("License:")]    # the deprecated free-text field
    license_text = (unpacked / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "scratchnet developers" in license_text


def test_the_unpacked_sdist_collects_its_own_tests(sdist):
    _, unpacked = sdist
    # python -m pytest puts the unpacked folder first on sys.path: the tests import its scratchnet and its helpers.
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                               cwd=unpacked, capture_output=True, text=True)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert " error" not in collected.stdout.splitlines()[-1]


SHIPPED_WITH_WEIGHTS = ("weights.npz", "MODEL_CARD.md", "config.json", "metrics.jsonl", "curves.png", "swa.json")


@pytest.fixture(scope="module")
def wheel(sdist, tmp_path_factory):
    """The names in the wheel built from the unpacked sdist, and the folder it was installed into."""
    _, unpacked = sdist
    work = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(work / "dist"),
                            str(unpacked)], capture_output=True, text=True)
    assert built.returncode == 0, f"python -m build --wheel failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    (archive,) = (work / "dist").glob("scratchnet-*.whl")
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                                "--target", str(work / "site"), str(archive)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-3000:]
    with zipfile.ZipFile(archive) as wheel_file:
        return set(wheel_file.namelist()), work / "site"


def test_the_wheel_carries_the_shipped_networks_but_not_their_training_checkpoints(wheel):
    names, _ = wheel
    weights = ROOT / "scratchnet" / "models" / "weights"
    expected = {str(path.relative_to(ROOT)) for path in weights.glob("*/*") if path.name in SHIPPED_WITH_WEIGHTS}
    assert {f"scratchnet/models/weights/densenet-bc-L40-k12-cifar10/{name}" for name in SHIPPED_WITH_WEIGHTS} <= expected
    carried = {name for name in names if name.startswith("scratchnet/models/weights/")}
    assert carried == expected
    assert "scratchnet/models/pretrained.py" in names


def test_the_installed_wheel_finds_its_own_weights(wheel):
    _, site = wheel
    code = ("from scratchnet.models import pretrained; print(pretrained.weights_folder())")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=site,
                           env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert found.returncode == 0, found.stderr
    folder = Path(found.stdout.strip())
    assert folder.is_relative_to(site) and (folder / "densenet-bc-L40-k12-cifar10").is_dir()
