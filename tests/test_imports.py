"""Start-up cost: the CLI and the plain strategies load no heavy libraries they do not use."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "networkx", "matplotlib", "segment_anything", "sam2", "ray")


@pytest.mark.parametrize("statement", [
    "import sepl_tree.cli",
    "from sepl_tree.plugins import load_host; load_host(autoload=False)",
    "import sepl_tree; sepl_tree.paint_kept, sepl_tree.Sample",
])
def test_no_heavy_import(statement):
    code = f"import sys; {statement}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


# --- the whole `sepl-tree run` process -----------------------------------------------------------

#: What a one-worker `sepl-tree run` uses none of: heavy libraries, the pool, the other commands.
NOT_IN_A_RUN = (*HEAVY, "scipy", "pycocotools", "multiprocessing", "concurrent.futures",
                "sepl_tree.cli.compare", "sepl_tree.cli.masks", "sepl_tree.cli.synth", "sepl_tree.cli.tree",
                "sepl_tree.compare", "sepl_tree.report", "sepl_tree.synth", "sepl_tree.convert", "sepl_tree.sam.fast",
                "sepl_tree.sam.job", "sepl_tree.sam.run", "sepl_tree.sam.generator")

MAIN = """
import os, sys
sys.argv = ["sepl-tree", *sys.argv[1:]]
from sepl_tree.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
print("LOADED", ",".join(m for m in {names!r} if m in sys.modules))
print("BLAS", os.environ.get("OPENBLAS_NUM_THREADS"))
print("CODE", code)
"""


def _main(args, env=None):
    import os

    code = MAIN.format(names=NOT_IN_A_RUN)
    blas = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")  # as if the user set none
    env = {**{k: v for k, v in os.environ.items() if k not in blas}, "SEPL_TREE_NO_PROGRESS": "1", **(env or {})}
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)
    tail = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.split(" ")[0] in ("LOADED", "BLAS", "CODE"))
    return done, tail


def test_a_one_worker_run_loads_only_what_it_uses(tmp_path):
    import numpy as np

    from tests.helpers import write_dataset

    rng = np.random.default_rng(0)
    p_dir, m_dir, _ = write_dataset(tmp_path, {"a": ((rng.random((20, 30)) < 0.4).astype(np.uint8) * 3,
                                                     rng.random((6, 20, 30)) < 0.3, None)})
    out = tmp_path / "out"
    done, tail = _main(["run", "--pseudo-labels", p_dir, "--masks", m_dir, "--out", out])
    assert tail["CODE"] == "0" and (out / "a.png").is_file(), done.stdout + done.stderr
    assert tail["LOADED"] == ""  # nothing of NOT_IN_A_RUN
    assert tail["BLAS"] == "1"  # numpy's OpenBLAS asked for one thread: nothing here calls BLAS

    # the same output as the whole command line gives in this process
    from typer.testing import CliRunner

    from sepl_tree.cli import app

    result = CliRunner().invoke(app, ["run", "--pseudo-labels", str(p_dir), "--masks", str(m_dir), "--out",
                                      str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again" / "a.png").read_bytes() == (out / "a.png").read_bytes()


def test_help_and_unknown_commands_see_every_command():
    from sepl_tree.cli import COMMANDS

    done, tail = _main(["--help"])
    listed = [line.split()[0] for line in done.stdout.split("Commands:")[1].splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)
    done, tail = _main(["nope"])
    assert tail["CODE"] == "2" and "No such command 'nope'" in done.stderr


def test_version_is_written_once_and_printed():
    import tomllib
    from pathlib import Path

    import sepl_tree

    done, tail = _main(["--version"])
    assert tail["CODE"] == "0" and done.stdout.splitlines()[0] == f"sepl-tree {sepl_tree.__version__}"
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sepl_tree.__version__"}


def test_a_users_blas_threads_and_masks_are_left_alone():
    _, tail = _main(["plugins"], env={"OMP_NUM_THREADS": "3"})
    assert tail["BLAS"] == "None" and tail["CODE"] == "0"
    _, tail = _main(["plugins"], env={"OPENBLAS_NUM_THREADS": "2"})
    assert tail["BLAS"] == "2"
    _, tail = _main(["masks", "--help"])
    assert tail["BLAS"] == "None"


def test_one_blas_thread_only_before_numpy(monkeypatch):
    from sepl_tree.cli import BLAS_THREAD_VARIABLES, one_blas_thread

    for name in BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not one_blas_thread("run")  # numpy is imported here already: too late to matter
    monkeypatch.delitem(sys.modules, "numpy")
    assert one_blas_thread("run")
    import os

    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert not one_blas_thread("masks")


def test_app_is_built_once_with_every_command():
    import sepl_tree.cli as cli

    assert cli.app is cli.app
    assert [c.name for c in cli.app.registered_commands] == list(cli.COMMANDS)
    with pytest.raises(AttributeError):
        cli.nothing  # noqa: B018


def test_a_command_module_imports_no_other_command():
    """(Shared options and helpers live in ``cli.common``: ``tree`` once pulled in ``compare``'s
    whole library through an option alias.)"""
    from sepl_tree.cli import COMMANDS

    modules = [target.split(":")[0] for target in COMMANDS.values()]
    code = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
            f"print(','.join(m for m in {modules!r} if m in sys.modules and m != sys.argv[1]))")
    for module in modules:
        done = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "", module
