"""Tree drawing: the layout on hand-built forests, the PNG, and `sepl-tree tree`."""

import io

import networkx as nx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sepl_tree.cli import app
from sepl_tree.demo import write_demo
from sepl_tree.masks import MaskSet
from sepl_tree.report import bar_chart, draw_tree, image_strip, label_to_rgb, masks_overlay, tidy_layout
from sepl_tree.tree import build_tree

runner = CliRunner()


def _png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.size


def test_layout_puts_parents_over_their_children_and_leaves_apart():
    tree = nx.DiGraph([(0, 1), (0, 2), (2, 3), (2, 4), (5, 6)])
    for n in tree.nodes:
        tree.nodes[n]["area"] = 100 - n  # lower index = larger: keeps the order readable
    pos = tidy_layout(tree)
    assert {n: d for n, (_, d) in pos.items()} == {0: 0, 1: 1, 2: 1, 3: 2, 4: 2, 5: 0, 6: 1}
    leaves = [n for n in tree.nodes if tree.out_degree(n) == 0]
    assert sorted(pos[n][0] for n in leaves) == [0.0, 1.0, 2.0, 3.0]
    assert pos[2][0] == (pos[3][0] + pos[4][0]) / 2
    assert pos[0][0] == (pos[1][0] + pos[2][0]) / 2
    assert pos[5][0] == pos[6][0] == 3.0


@pytest.mark.parametrize("seed", range(4))
def test_layout_on_random_forests(seed):
    rng = np.random.default_rng(seed)
    tree = nx.DiGraph()
    tree.add_node(0)
    for n in range(1, 30):
        parent = int(rng.integers(-3, n))  # negative: a new root
        tree.add_node(n)
        if parent >= 0:
            tree.add_edge(parent, n)
    pos = tidy_layout(tree)
    assert set(pos) == set(tree.nodes)
    for parent, child in tree.edges:
        assert pos[child][1] == pos[parent][1] + 1
    xs_per_depth = {}
    for n, (x, d) in pos.items():
        xs_per_depth.setdefault(d, []).append(x)
    assert all(len(set(xs)) == len(xs) for xs in xs_per_depth.values())  # no two nodes on one spot


def _nested_masks():
    m = np.zeros((4, 30, 40), bool)
    m[0] = True
    m[1, 5:25, 5:35] = True
    m[2, 8:20, 8:20] = True
    m[3, 0:4, 0:4] = True
    return MaskSet(m)


def test_draw_tree_gives_a_png_that_widens_with_leaves():
    small = _nested_masks()
    tree = build_tree(small)
    assert sorted(tree.edges) == [(0, 1), (0, 3), (1, 2)]
    image = np.full((30, 40, 3), 200, np.uint8)
    w1, h1 = _png_size(draw_tree(tree, small.masks, image))
    wide = np.zeros((8, 30, 40), bool)
    for n in range(8):
        wide[n, :, n * 5:(n + 1) * 5] = True
    w2, _ = _png_size(draw_tree(build_tree(MaskSet(wide)), wide))
    assert w2 > w1 and h1 > 50


def test_draw_tree_with_no_masks():
    assert _png_size(draw_tree(nx.DiGraph(), np.zeros((0, 10, 10), bool)))[0] > 0


def test_pictures_helpers():
    label = np.array([[0, 1], [255, 2]], np.uint8)
    rgb = label_to_rgb(label)
    assert rgb.shape == (2, 2, 3) and rgb[1, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [128, 0, 0]
    masks = np.zeros((2, 2, 2), bool)
    masks[0] = True
    masks[1, 0, 0] = True
    over = masks_overlay(masks)
    assert not np.array_equal(over[0, 0], over[1, 1])  # the small mask is drawn on top of the big one
    _png_size(image_strip([("a", rgb), ("b", over)], title="t"))
    summary = {"all": {"images": 2, "input": {"miou": 50.0},
                       "strategies": {"threshold": {"miou": 60.0}}},
               "nested": {"images": 0, "input": {"miou": None}, "strategies": {"threshold": {"miou": None}}}}
    _png_size(bar_chart(summary, "miou", ["threshold"]))


def test_tree_command_draws_a_demo_image(tmp_path):
    ids = write_demo(tmp_path / "demo", n_images=4)
    out = tmp_path / "pics" / "tree.png"
    for image_id in (ids[0], ids[3]):  # RLE and PNG-folder layouts
        result = runner.invoke(app, ["tree", "--masks", str(tmp_path / "demo" / "masks"), "--id", image_id,
                                     "--image", str(tmp_path / "demo" / "images"), "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert "roots" in result.output
        w, h = _png_size(out.read_bytes())
        assert w > 100 and h > 100


def test_tree_command_errors_name_the_file(tmp_path):
    ids = write_demo(tmp_path / "demo", n_images=1)
    result = runner.invoke(app, ["tree", "--masks", str(tmp_path / "demo" / "masks"), "--id", "nope",
                                 "--out", str(tmp_path / "t.png")])
    assert result.exit_code == 1 and "nope.json" in result.output
    result = runner.invoke(app, ["tree", "--masks", str(tmp_path / "demo" / "masks"), "--id", ids[0],
                                 "--image", str(tmp_path), "--out", str(tmp_path / "t.png")])
    assert result.exit_code == 1 and f"{ids[0]}.jpg" in result.output
    assert not (tmp_path / "t.png").exists()
