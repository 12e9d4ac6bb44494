"""``sepl-tree run`` and ``sepl-tree masks`` with ``--executor ray`` on a two-node Ray cluster
started with ``ray start`` on this machine (token authentication on, as Ray sets it up by
default): one node is killed mid-run and the run finishes with the other, its outputs identical
to a serial run; a driver without the token is told, in one line, how to join.

The CLI runs in a subprocess, as a user would run it (and because a process that has imported
Ray keeps the authentication mode it started with). Its strategy is ``threshold`` (for
``masks``: the tiny SAM) made slow by a plugin (0.25 s per image on the cluster's workers,
which wait until the test has seen both start before they finish one); the serial reference
runs here, at full speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sepl_tree.cli import app
from sepl_tree.demo import write_demo
from tests.helpers import needs_ray
from tests.local_cluster import LocalCluster

CLI = [sys.executable, "-c", "from sepl_tree.cli import main; main()"]
IMAGES = 40
SECONDS_PER_IMAGE = 0.25

SLOW_PLUGIN = textwrap.dedent(
    '''
    import sys

    sys.path.insert(0, {repo!r})
    from sepl_tree import Strategy, hookimpl
    from sepl_tree.strategies.threshold import threshold
    from tests.cluster_marks import hold_then_sleep


    def slow_threshold(sample):
        """threshold, after ``hold_then_sleep`` (SEPL_TEST_SECONDS per image)."""
        hold_then_sleep()
        return threshold(sample)


    @hookimpl
    def register_strategies(register):
        register(Strategy("slow-threshold", slow_threshold))
    '''
)
REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_demo(root, n_images=IMAGES, seed=5)
    plugin = root / "slow_threshold.py"
    plugin.write_text(SLOW_PLUGIN.format(repo=str(REPO)))
    serial = root / "serial"
    result = CliRunner().invoke(app, run_args(root, serial, "--executor", "serial"))
    assert result.exit_code == 0, result.output
    return root, serial


def run_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--pseudo-labels", str(root / "pseudo"), "--masks", str(root / "masks"), "--out", str(out),
            "--strategy", "slow-threshold", "--plugin", str(root / "slow_threshold.py"), *extra]


def assert_same_outputs(out: Path, serial: Path) -> None:
    names = sorted(p.name for p in serial.glob("*.png"))
    assert len(names) == IMAGES and names == sorted(p.name for p in out.glob("*.png"))
    for name in names:
        assert (out / name).read_bytes() == (serial / name).read_bytes(), name
    assert not list(out.glob(".*.tmp"))


@pytest.fixture
def cluster():
    """A head node and a worker node, one CPU each; every process they start is killed after the test."""
    local = LocalCluster()
    marks = local.root / "marks"
    marks.mkdir()
    try:
        node_env = {"SEPL_TEST_SECONDS": str(SECONDS_PER_IMAGE), "SEPL_TEST_MARKS": str(marks)}
        local.start_node("head", num_cpus=1, env=node_env)
        local.start_node("node2", num_cpus=1, env=node_env)
        yield local
    finally:
        local.stop()


@pytest.fixture
def head():
    """A one-node cluster (token authentication on)."""
    local = LocalCluster()
    try:
        local.start_node("head", num_cpus=1)
        yield local
    finally:
        local.stop()


def wait_until(condition, cli: subprocess.Popen, tmp_path: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert cli.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr").read_text()
        time.sleep(0.05)


def run_losing_node2(cluster, args: list[str], written: Callable[[], int], at: int, before: int,
                     tmp_path: Path) -> None:
    """Run the CLI with ``args`` on ``cluster`` and kill node2 once ``written()`` is ``at`` (and
    still under ``before``); the run must finish, saying once that it lost a worker."""
    marks = cluster.root / "marks"
    with open(tmp_path / "stdout", "wb") as stdout, open(tmp_path / "stderr", "wb") as stderr:
        cli = subprocess.Popen([*CLI, *args, "--executor", "ray", "--ray-address", cluster.address, "--workers", "2"],
                               env=cluster.env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        try:
            # Both workers hold images before any finishes; node2 is killed once a few are written.
            wait_until(lambda: len(list(marks.iterdir())) >= 2, cli, tmp_path)
            (marks / "go").touch()
            wait_until(lambda: written() >= at, cli, tmp_path)
            assert written() < before
            cluster.kill_node("node2")
            rc = cli.wait(timeout=180)
        finally:
            if cli.poll() is None:
                cli.kill()
    err = (tmp_path / "stderr").read_text()
    assert rc == 0, err + (tmp_path / "stdout").read_text()
    assert "Traceback" not in err
    assert not [line for line in err.splitlines() if " INFO " in line], err  # Ray's "Connecting to ..." notices
    lost = [line for line in err.splitlines() if "lost a Ray worker" in line]
    assert len(lost) == 1 and "image(s) it held go back to the queue; 1 worker(s) left" in lost[0], err


@needs_ray
def test_a_run_survives_a_lost_node_and_writes_what_a_serial_run_writes(cluster, dataset, tmp_path):
    root, serial = dataset
    out = tmp_path / "ray"
    run_losing_node2(cluster, run_args(root, out), lambda: len(list(out.glob("*.png"))), 4, IMAGES // 2, tmp_path)
    assert_same_outputs(out, serial)
    execution = json.loads((out / "run.json").read_text())["execution"]
    assert execution["executor"] == "ray" and execution["cluster"] == {"nodes": 2, "cpus": 2, "gpus": 0}
    assert execution["workers"] == {"asked": 2, "used": 2, "lost": 1} and execution["retried_images"] >= 1


SLOW_SAM_PLUGIN = textwrap.dedent(
    '''
    import sys

    sys.path.insert(0, {repo!r})
    from sepl_tree import hookimpl
    from tests.cluster_marks import hold_then_sleep
    from tests.tiny_sam import build_tiny_sam


    def build_slow_tiny_sam(checkpoint):
        """The tiny SAM, ``hold_then_sleep`` first in ``preprocess`` (which both engines call once per image)."""
        model = build_tiny_sam(checkpoint)
        preprocess = model.preprocess

        def slow(x):
            hold_then_sleep()
            return preprocess(x)

        model.preprocess = slow
        return model


    @hookimpl
    def register_sam_models(register):
        register("slow-tiny", build_slow_tiny_sam)
    '''
)
MASK_IMAGES = 16


@pytest.fixture(scope="module")
def sam_dataset(tmp_path_factory):
    pytest.importorskip("segment_anything", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")
    from PIL import Image

    from tests import tiny_sam
    from tests.tiny_sam_helpers import blobs

    root = tmp_path_factory.mktemp("sam")
    (root / "images").mkdir()
    for n in range(MASK_IMAGES):
        Image.fromarray(blobs(n)).save(root / "images" / f"im{n:02d}.png")
    tiny_sam.save_tiny_checkpoint(root / "tiny.pth")
    (root / "slow_tiny_sam.py").write_text(SLOW_SAM_PLUGIN.format(repo=str(REPO)))
    result = CliRunner().invoke(app, sam_args(root, root / "serial", "--executor", "serial"))
    assert result.exit_code == 0, result.output
    return root


def sam_args(root: Path, out: Path, *extra: str) -> list[str]:
    from tests.tiny_sam_helpers import masks_args

    return masks_args(root / "images", root / "tiny.pth", out, "slow-tiny", root / "slow_tiny_sam.py", *extra)


@needs_ray
def test_a_masks_run_survives_a_lost_node_and_writes_what_a_serial_run_writes(cluster, sam_dataset, tmp_path):
    """The SAM job on Ray: one worker per node, tasks of one id (``--device auto`` on a cluster
    without GPUs is the CPU: nothing to batch); node2 is killed once a few masks are written,
    holding two tasks that go back to the queue."""
    root = sam_dataset
    out = tmp_path / "ray"
    run_losing_node2(cluster, sam_args(root, out), lambda: len(list(out.glob("*.json"))), 2, MASK_IMAGES // 2,
                     tmp_path)
    names = sorted(p.name for p in (root / "serial").glob("*.json"))
    assert len(names) == MASK_IMAGES and names == sorted(p.name for p in out.glob("*.json"))
    for name in names:
        assert (out / name).read_bytes() == (root / "serial" / name).read_bytes(), name
    assert not list(out.glob(".*.tmp"))
    execution = json.loads((out / "masks_run.jsonl").read_text().splitlines()[-1])["execution"]
    assert execution["cluster"] == {"nodes": 2, "cpus": 2, "gpus": 0}
    assert execution["workers"] == {"asked": 2, "used": 2, "lost": 1} and execution["retried_images"] >= 2


@needs_ray
def test_a_driver_without_the_token_is_told_how_to_join(head, dataset, tmp_path):
    root, _ = dataset
    env = {k: v for k, v in head.env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    env["RAY_gcs_server_port_wait_time_s"] = "2"  # Ray retries for 20 s by default before it gives up
    result = subprocess.run([*CLI, *run_args(root, tmp_path / "out", "--executor", "ray", "--ray-address",
                                             head.address)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot join the Ray cluster at {head.address}: it uses token authentication; "
                      "set RAY_AUTH_MODE=token and give this machine the cluster's token in ~/.ray/auth_token "
                      "(copied from the head node), RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"], result.stderr
    assert "Traceback" not in result.stderr


@needs_ray
def test_a_local_ray_starts_without_rays_notices(tmp_path):
    """"Started a local Ray instance." and the token notice of a local start are not printed."""
    code = ("from sepl_tree.executors import execute; from tests.helpers import Double; "
            "print(sorted(execute(Double(), ['1', '2'], executor='ray', workers=1)))")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('1', 2), ('2', 4)]"
    assert "Started a local Ray instance" not in result.stderr and "Token authentication" not in result.stderr, \
        result.stderr
