"""Every way a run could mislead or lose data, through the CLI, one row each.

A row builds a small dataset (``D``: ``D/pseudo``, ``D/masks`` RLE, ``D/gt``, ``D/out`` already
made by a threshold run), damages or misuses it in one way, runs one command and states the exit
code and the one line the user must see. Every row also checks what must always hold: no
traceback, a single error line, the inputs untouched (byte for byte) and nothing half-written
(no ``.tmp`` file anywhere under ``D``). A new bad input is one more row.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sepl_tree import __version__
from sepl_tree.cli import app
from sepl_tree.files import read_label_png
from tests.helpers import write_dataset

runner = CliRunner()
SHAPE = (12, 16)


def _items() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    items = {}
    for n in range(3):
        pseudo = np.zeros(SHAPE, np.uint8)
        pseudo[3:8, 4 + n:10 + n] = 1
        masks = np.zeros((3, *SHAPE), bool)
        masks[0, 2:9, 3 + n:11 + n] = True
        masks[1, 3:8, 4 + n:7 + n] = True
        masks[2, 0:12, 0:16] = True
        gt = np.zeros(SHAPE, np.uint8)
        gt[2:9, 3 + n:11 + n] = 1
        items[f"img{n}"] = (pseudo, masks, gt)
    return items


def _tree_of(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-1 of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def d(tmp_path: Path) -> Path:
    write_dataset(tmp_path, _items())
    args = ["run", "--pseudo-labels", str(tmp_path / "pseudo"), "--masks", str(tmp_path / "masks"),
            "--out", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return tmp_path


def _run(d: Path, *extra: str, out: str = "out") -> list[str]:
    return ["run", "--pseudo-labels", str(d / "pseudo"), "--masks", str(d / "masks"), "--out", str(d / out), *extra]


def _jpeg_named_png(path: Path) -> None:
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(path, format="JPEG")


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb's trick)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
                     + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


def _rle_size(size: object) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        records = json.loads((d / "masks" / "img1.json").read_text())
        records[0]["segmentation"]["size"] = size
        (d / "masks" / "img1.json").write_text(json.dumps(records))
    return damage


def _nested(d: Path) -> None:
    (d / "masks" / "img1.json").write_text("[" * 100_000 + "]" * 100_000)


def _both_layouts(d: Path) -> None:
    folder = d / "masks" / "img1"
    folder.mkdir()
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(folder / "0.png")


def _plugin(body: str) -> Callable[[Path], None]:
    def write(d: Path) -> None:
        (d / "bad.py").write_text(
            "import numpy as np\nfrom sepl_tree import Strategy, hookimpl\n\n"
            f"def bad(sample):\n    {body}\n\n"
            "@hookimpl\ndef register_strategies(register):\n    register(Strategy('bad', bad))\n")
    return write


def _reader_plugin(body: str) -> Callable[[Path], None]:
    """A reader plugin ``bad`` (``bad_reader.py``) of ``<id>.png`` files: ``label`` is the PNG read."""
    def write(d: Path) -> None:
        (d / "bad_reader.py").write_text(
            "import numpy as np\nfrom sepl_tree import Reader, hookimpl\nfrom sepl_tree.files import read_png\n\n"
            f"def bad(folder, image_id, ctx):\n    label = read_png(folder / (image_id + '.png'))\n    {body}\n\n"
            "@hookimpl\ndef register_readers(register):\n    register(Reader('bad', bad))\n")
    return write


def _with_reader(d: Path, command: str) -> list[str]:
    reader = ["--plugin", str(d / "bad_reader.py"), "--reader", "bad"]
    if command == "convert":
        return ["convert", "-i", str(d / "pseudo"), "-o", str(d / "c"), *reader]
    return _run(d, *reader, out="fresh")


def _claims_huge(d: Path) -> None:
    records = [{"segmentation": {"size": [60000, 60000], "counts": "0"}, "area": 0}]
    (d / "masks" / "img1.json").write_text(json.dumps(records))


def _chmod_out_read_only(d: Path) -> None:
    (d / "ro").mkdir()
    os.chmod(d / "ro", 0o555)


@dataclass(frozen=True)
class Case:
    """A misuse: what to do to the dataset, the command (``d`` -> argv), exit code and message."""

    id: str
    prepare: Callable[[Path], None] | None
    argv: Callable[[Path], list[str]]
    code: int
    message: str
    unchanged: tuple[str, ...] = ("pseudo", "masks", "gt", "out")


CASES = [
    # 1. stale outputs: a folder made with other settings is refused, naming what differs
    Case("other strategy", None, lambda d: _run(d, "--strategy", "official"), 1,
         "made with other settings (params.t1 0.5 -> (none), strategy 'threshold' -> 'official'); "
         "use --overwrite to replace its outputs"),
    Case("other parameter", None, lambda d: _run(d, "--param", "t2=0.9"), 1,
         "made with other settings (params.t2 0.85 -> 0.9)"),
    Case("other plugin", lambda d: _plugin("return sample.pseudo.copy()")(d),
         lambda d: _run(d, "--plugin", str(d / "bad.py")), 1, "made with other settings (plugins"),
    Case("masks remade by sepl-tree masks", lambda d: (d / "masks" / "masks_run.jsonl").write_text(
        json.dumps({"model_type": "vit_b", "preset": "paper", "settings": {"points_per_side": 32}}) + "\n"),
         lambda d: _run(d), 1, "made with other settings (masks_made_with.masks.checkpoint (none) -> None, "
         "masks_made_with.masks.family (none) -> None, masks_made_with.masks.model_type (none) -> 'vit_b'"),
    Case("masks remade by sepl-tree synth", lambda d: (d / "masks" / "synth.json").write_text(
        json.dumps({"settings": {"seed": 1}, "synthetic": True})),
         lambda d: _run(d), 1, "made with other settings (masks_made_with.synth.seed (none) -> 1)"),
    Case("outputs without a manifest", lambda d: (d / "out" / "run.json").unlink(), lambda d: _run(d), 1,
         "holds 3 output(s) (e.g. img0.png) but no run.json saying how they were made",
         ("pseudo", "masks", "gt")),
    # 2. inputs are never outputs
    Case("out is the pseudo-labels", None, lambda d: _run(d, "--overwrite", out="pseudo"), 1,
         "is --pseudo-labels"),
    Case("out inside the masks", None, lambda d: _run(d, out="masks/sub"), 1, "is inside --masks"),
    Case("out holds the gt", None, lambda d: _run(d, "--gt", str(d / "gt"), out=""), 1, "holds --pseudo-labels"),
    Case("convert into its input", None,
         lambda d: ["convert", "-r", "png", "-i", str(d / "pseudo"), "-o", str(d / "pseudo")], 1, "is --input"),
    Case("synth into its dataset", lambda d: (d / "SegmentationClass").mkdir() or (d / "SegmentationClass" / "a.png")
         .write_bytes((d / "gt" / "img0.png").read_bytes()),
         lambda d: ["synth", "--dataset", str(d), "--out", str(d / "syn")], 1, "is inside --dataset"),
    # 3. silent score changes
    Case("an id listed twice", lambda d: (d / "ids.txt").write_text("img0\nimg1\nimg0\n"),
         lambda d: _run(d, "--ids", str(d / "ids.txt")), 1, "id 'img0' is listed twice"),
    Case("eval with a prediction missing", lambda d: (d / "ids.txt").write_text("img0\nimg1\nimg9\n") and
         (d / "gt" / "img9.png").write_bytes((d / "gt" / "img0.png").read_bytes()),
         lambda d: ["eval", "--pred", str(d / "out"), "--gt", str(d / "gt"), "--ids", str(d / "ids.txt")], 1,
         "img9.png: file not found (1 of 3 predictions are missing; --allow-missing scores the rest)"),
    Case("run --gt with a GT file missing", lambda d: (d / "gt" / "img2.png").unlink(),
         lambda d: _run(d, "--gt", str(d / "gt"), out="fresh"), 1, "img2.png: no ground truth for image 'img2'",
         ("pseudo", "masks", "gt", "out", "fresh")),
    Case("run --ids with an id that has no pseudo-label", lambda d: (d / "ids.txt").write_text("img0\nimg9\n"),
         lambda d: _run(d, "--ids", str(d / "ids.txt"), out="fresh"), 1,  # (it named its masks, checked first)
         "img9.png: no pseudo-label for image 'img9'", ("pseudo", "masks", "gt", "out", "fresh")),
    Case("compare --ids with a folder named like a pseudo-label",
         lambda d: ((d / "ids.txt").write_text("img0\nimg9\n"), (d / "pseudo" / "img9.png").mkdir()),
         lambda d: ["compare", "-s", "threshold", "--pseudo-labels", str(d / "pseudo"), "--masks", str(d / "masks"),
                    "--gt", str(d / "gt"), "--out", str(d / "fresh"), "--ids", str(d / "ids.txt")], 1,
         "img9.png: is a folder, not a pseudo-label file", ("masks", "gt", "out", "fresh")),
    # 4. content over suffix
    Case("a JPEG named .png as pseudo-label", lambda d: _jpeg_named_png(d / "pseudo" / "img1.png"),
         lambda d: _run(d, out="fresh"), 1, "img1.png: not a PNG file (it holds JPEG data"),
    Case("a JPEG named .png as mask", lambda d: (_both_layouts(d), (d / "masks" / "img1.json").unlink(),
                                                 _jpeg_named_png(d / "masks" / "img1" / "0.png")),
         lambda d: _run(d, out="fresh"), 1, "0.png: not a PNG file (it holds JPEG data"),
    Case("tree --out x.jpg", None, lambda d: ["tree", "--masks", str(d / "masks"), "--id", "img0",
                                              "--out", str(d / "t.jpg")], 1, "give a file name ending in .png"),
    Case("tree --out DIR", None, lambda d: ["tree", "--masks", str(d / "masks"), "--id", "img0",
                                            "--out", str(d / "out")], 1, "give a file name ending in .png"),
    # 5. parameters out of range
    Case("t1=5", None, lambda d: _run(d, "-p", "t1=5", out="fresh"), 1,
         "strategy 'threshold': parameter 't1': must be in [0, 1], got 5.0"),
    Case("t1=-1", None, lambda d: _run(d, "-p", "t1=-1", out="fresh"), 1, "parameter 't1': must be in [0, 1], got -1.0"),
    Case("t1=nan", None, lambda d: _run(d, "-p", "t1=nan", out="fresh"), 1,
         "parameter 't1': expected a finite number in [0, 1], got nan"),
    Case("t2=inf", None, lambda d: _run(d, "-p", "t2=inf", out="fresh"), 1,
         "parameter 't2': expected a finite number in [0, 1], got inf"),
    Case("tau=0", None, lambda d: _run(d, "-s", "tree-residual", "-p", "tau=0", out="fresh"), 1,
         "parameter 'tau': must be in (0, 1], got 0.0"),
    Case("reader bg=-1", None, lambda d: ["convert", "-r", "irn", "-i", str(d / "pseudo"), "-o", str(d / "c"),
                                          "-p", "bg=-1"], 1, "reader 'irn': parameter 'bg': must be in [0, inf)"),
    # one line, never a traceback
    Case("--out is a file", lambda d: (d / "afile").write_text("x"), lambda d: _run(d, out="afile"), 1,
         "afile: is a file, not a folder"),
    Case("--out under a file", lambda d: (d / "afile").write_text("x"), lambda d: _run(d, out="afile/o"), 1,
         "afile/o: a parent of it is a file, not a folder"),
    Case("RLE size 60x80", _rle_size("60x80"), lambda d: _run(d, out="fresh"), 1,
         "img1.json: record 0 has RLE size '60x80'; expected [height, width] (two integers)"),
    Case("RLE size [60]", _rle_size([60]), lambda d: _run(d, out="fresh"), 1, "record 0 has RLE size [60]"),
    Case("RLE size null", _rle_size(None), lambda d: _run(d, out="fresh"), 1, "record 0 has RLE size None"),
    Case("a PNG decompression bomb", lambda d: _png_claiming(d / "pseudo" / "img1.png", 20000, 20000),
         lambda d: _run(d, out="fresh"), 1, "img1.png: is 20000x20000 (HxW) = 400000000 pixels, more than the limit"),
    Case("JSON nested 100,000 deep", _nested, lambda d: _run(d, out="fresh"), 1,
         "img1.json: JSON nested too deeply to read"),
    Case("eval --json DIR", None, lambda d: ["eval", "--pred", str(d / "out"), "--gt", str(d / "gt"),
                                             "--json", str(d / "out")], 1, "is a folder; give a file name"),
    Case("a plugin strategy that raises", _plugin("raise KeyError('k')"),
         lambda d: _run(d, "--plugin", str(d / "bad.py"), "-s", "bad", out="fresh"), 1,
         "strategy 'bad' (file {d}/bad.py) on image 'img0' failed: KeyError: 'k'"),
    Case("a strategy returning labels outside 0..K-1", _plugin("return sample.pseudo + 40"),
         lambda d: _run(d, "--plugin", str(d / "bad.py"), "-s", "bad", out="fresh"), 1,
         "strategy 'bad' (file {d}/bad.py) on image 'img0' returned label 40, outside 0..20 and 255"),
    Case("a strategy returning the wrong shape", _plugin("return sample.pseudo[:2]"),
         lambda d: _run(d, "--plugin", str(d / "bad.py"), "-s", "bad", out="fresh"), 1,
         "returned (2, 16), expected an array of shape (12, 16)"),
    *(Case(f"{command}: {what}", _reader_plugin(body), lambda d, c=command: _with_reader(d, c), 1, message)
      for command in ("run", "convert")
      for what, body, message in [
          ("a reader that raises", "raise KeyError('cam')",
           "reader 'bad' (file {d}/bad_reader.py) failed on image 'img0': KeyError: 'cam'"),
          ("a reader returning labels outside 0..K-1", "return label + 30",
           "reader 'bad' (file {d}/bad_reader.py) returned label 30 for image 'img0', outside 0..20 and 255"),
          ("a reader returning a bool map", "return label > 0",
           "returned an array of bool, shape (12, 16), for image 'img0'; a label map is (H, W) of the labels 0..20 or 255"),
          ("a reader returning nothing", "return None", "returned NoneType for image 'img0'"),
          ("a reader returning a 3-D array", "return label[None]", "returned an array of uint8, shape (1, 12, 16),"),
          ("a reader returning negative int64 labels", "return label.astype(np.int64) - 1",
           "returned an array of int64, shape (12, 16), for image 'img0'"),
          ("a reader raising an OSError of no file", "raise OSError('image file is truncated')",
           "reader 'bad' (file {d}/bad_reader.py) failed on image 'img0': OSError: image file is truncated"),
      ]),
    Case("both <id>.json and <id>/", _both_layouts, lambda d: _run(d, out="fresh"), 1,
         "img1.json: both this file and {d}/masks/img1/ hold masks for image 'img1'; keep one of them"),
    # 8. lists, configs and options that are not what they claim to be
    Case("an id list that is not UTF-8", lambda d: (d / "ids.txt").write_bytes(b"img0\nim\xffg1\n"),
         lambda d: _run(d, "--ids", str(d / "ids.txt"), out="fresh"), 1, "ids.txt: the id list is not UTF-8 text"),
    Case("an id that leaves the folders", lambda d: (d / "ids.txt").write_text("img0\n../esc\n"),
         lambda d: _run(d, "--ids", str(d / "ids.txt"), out="fresh"), 1,
         "ids.txt: id '../esc' would name a file outside the folders"),
    Case("a config that is not UTF-8", lambda d: (d / "c.toml").write_bytes(b"strategy = '\xff'\n"),
         lambda d: _run(d, "--config", str(d / "c.toml"), out="fresh"), 2, "c.toml: invalid TOML (not UTF-8 text"),
    Case("a config whose class names do not fit K", lambda d: (d / "c.toml").write_text('class_names = ["bg", "cat"]\n'),
         lambda d: _run(d, "--config", str(d / "c.toml"), "--gt", str(d / "gt"), out="fresh"), 1,
         "c.toml: 2 class names given for 21 classes (--num-classes)", ("pseudo", "masks", "gt", "out", "fresh")),
    Case("a config with an unknown key", lambda d: (d / "c.toml").write_text("nosuchkey = 1\n"),
         lambda d: _run(d, "--config", str(d / "c.toml"), out="fresh"), 2, "c.toml: unknown key 'nosuchkey'; valid keys:"),
    Case("a config that is not TOML", lambda d: (d / "c.toml").write_text("a = [\n"),
         lambda d: _run(d, "--config", str(d / "c.toml"), out="fresh"), 2, "c.toml: invalid TOML"),
    Case("a config that is not there", None, lambda d: _run(d, "--config", str(d / "nope.toml"), out="fresh"), 2,
         "nope.toml: cannot read config (No such file or directory)"),
    Case("a config whose class names are not strings", lambda d: (d / "c.toml").write_text('class_names = ["a", 2]\n'),
         lambda d: _run(d, "--config", str(d / "c.toml"), out="fresh"), 2,
         "c.toml: class_names must be a list of names (strings)"),
    Case("an id list of comments only", lambda d: (d / "ids.txt").write_text("# none\n\n"),
         lambda d: _run(d, "--ids", str(d / "ids.txt"), out="fresh"), 1, "ids.txt: the id list is empty"),
    Case("an id list that is a folder", None, lambda d: _run(d, "--ids", str(d / "gt"), out="fresh"), 1,
         "gt: cannot read the id list (Is a directory)"),
    Case("a config whose params is a number", lambda d: (d / "c.toml").write_text("params = 3\n"),
         lambda d: _run(d, "--config", str(d / "c.toml"), out="fresh"), 2,
         "c.toml: params must be a table ([params] NAME = VALUE), got 3"),
    Case("synth --seed -1", None, lambda d: ["synth", "--dataset", str(d), "--out", str(d / "sy"), "--seed", "-1"], 2,
         "Invalid value for '--seed'"),
    Case("tree --tau nan", None, lambda d: ["tree", "--masks", str(d / "masks"), "--id", "img0", "--out",
                                            str(d / "t.png"), "--tau", "nan"], 1, "--tau must be in (0, 1], got nan"),
    Case("tree --out inside the masks", None, lambda d: ["tree", "--masks", str(d / "masks"), "--id", "img0",
                                                         "--out", str(d / "masks" / "img0.png")], 1,
         "is inside --masks {d}/masks: the drawing could replace an input"),
    Case("eval --json onto a ground-truth PNG", None,
         lambda d: ["eval", "--pred", str(d / "out"), "--gt", str(d / "gt"), "--json", str(d / "gt" / "img0.png")], 1,
         "would replace a label map of --gt"),
    Case("compare --images that is not there", None,
         lambda d: ["compare", "-s", "threshold", "--pseudo-labels", str(d / "pseudo"), "--masks", str(d / "masks"),
                    "--gt", str(d / "gt"), "--out", str(d / "cmp"), "--images", str(d / "nope")], 1,
         "nope: image folder not found (--images)"),
    # memory safety: a size claimed by a small file is checked before anything is allocated
    Case("tree on a mask JSON claiming 60000x60000", _claims_huge,
         lambda d: ["tree", "--masks", str(d / "masks"), "--id", "img1", "--out", str(d / "t.png")], 1,
         "img1.json: masks claim 60000x60000 (HxW) = 3600000000 pixels, more than the limit"),
]


def _images(d: Path) -> None:
    (d / "img").mkdir()
    Image.fromarray(np.full((*SHAPE, 3), 120, np.uint8)).save(d / "img" / "a.jpg")


def _masks(d: Path, checkpoint: Path) -> list[str]:
    tiny = Path(__file__).with_name("tiny_sam.py")
    return ["masks", "--images", str(d / "img"), "--checkpoint", str(checkpoint), "--out", str(d / "sam"),
            "--model-type", "tiny", "--plugin", str(tiny), "--device", "cpu"]


def _corrupt_checkpoint(d: Path) -> None:
    _images(d)
    (d / "c.pth").write_bytes(b"PK\x03\x04 not a zip archive at all")


def _checkpoint_folder(d: Path) -> None:
    _images(d)
    (d / "ckpt").mkdir()


HAS_TORCH = __import__("importlib.util").util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")
CASES += [
    Case("a checkpoint that is a folder", _checkpoint_folder, lambda d: _masks(d, d / "ckpt"), 1,
         "ckpt: cannot load a SAM checkpoint from it: it is a folder, not a checkpoint file"),
    Case("a corrupt checkpoint", _corrupt_checkpoint, lambda d: _masks(d, d / "c.pth"), 1,
         "c.pth: cannot load as a 'tiny' SAM checkpoint: it is not a readable torch checkpoint (corrupt, "
         "truncated or another kind of file)"),
    Case("masks into its image folder", _checkpoint_folder,
         lambda d: [*_masks(d, d / "ckpt")[:5], "--out", str(d / "img"), *_masks(d, d / "ckpt")[7:]], 1, "is --images"),
]
PARAMS = [pytest.param(c, id=c.id, marks=[needs_torch] if "checkpoint" in c.id or "masks" in c.id else [])
          for c in CASES]


@pytest.mark.parametrize("case", PARAMS)
def test_misuse_is_one_clear_line_and_harms_nothing(d: Path, case: Case) -> None:
    if case.prepare is not None:
        case.prepare(d)
    before = {name: _tree_of(d / name) for name in case.unchanged if (d / name).exists()}
    result = runner.invoke(app, case.argv(d))
    output = result.output
    assert result.exit_code == case.code, output
    assert "Traceback" not in output and result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, output
    assert case.message.format(d=d) in " ".join(output.split()), output
    for name, files in before.items():
        assert _tree_of(d / name) == files, f"{name} changed"
    assert not [p for p in d.rglob("*") if p.name.endswith(".tmp")], "a half-written file was left"


def test_overwrite_replaces_a_folder_made_with_other_settings(d: Path) -> None:
    result = runner.invoke(app, [*_run(d, "--strategy", "official", "--overwrite")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((d / "out" / "run.json").read_text())
    assert manifest["settings"]["strategy"] == "official" and manifest["counts"]["written"] == 3


def test_compare_refuses_a_strategy_folder_made_with_other_parameters(d: Path) -> None:
    args = ["compare", "-s", "threshold", "--pseudo-labels", str(d / "pseudo"), "--masks", str(d / "masks"),
            "--gt", str(d / "gt"), "--out", str(d / "cmp")]
    assert runner.invoke(app, args).exit_code == 0
    before = _tree_of(d / "cmp" / "threshold")
    result = runner.invoke(app, [*args, "--param", "t1=0.6"])
    assert result.exit_code == 1 and "made with other settings (params.t1 0.5 -> 0.6)" in " ".join(result.output.split())
    assert _tree_of(d / "cmp" / "threshold") == before
    # ... while another strategy beside it is simply added
    assert runner.invoke(app, [*args[:2], "threshold,official", *args[3:]]).exit_code == 0


def test_a_stopped_run_says_so_in_its_manifest_and_resumes(d: Path) -> None:
    (d / "pseudo" / "img1.png").write_bytes(b"")
    result = runner.invoke(app, _run(d, out="fresh"))
    assert result.exit_code == 1
    manifest = json.loads((d / "fresh" / "run.json").read_text())
    assert manifest["status"] == "stopped" and "img1.png" in manifest["error"] and manifest["settings"]["strategy"]
    written = sorted(p.stem for p in (d / "fresh").glob("*.png"))  # (the counts up to the stop: README says so)
    assert written == ["img0"] and manifest["counts"] == {"images": len(_items()), "written": 1, "skipped_existing": 0,
                                                          "kept_without_masks": 0, "made_again_inputs_changed": 0}
    write_dataset(d, {"img1": _items()["img1"]})
    assert runner.invoke(app, _run(d, out="fresh")).exit_code == 0
    assert json.loads((d / "fresh" / "run.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("changed", ["pseudo", "masks"])
def test_an_output_whose_inputs_were_regenerated_is_made_again(d: Path, changed: str) -> None:
    """(Pseudo-labels or masks regenerated into the same folders: reusing the old outputs would
    score the new inputs with labels made from the old ones.)"""
    old = (d / "out" / "img1.png").read_bytes()
    items = _items()
    pseudo, masks, gt = items["img1"]
    if changed == "pseudo":
        pseudo = np.zeros_like(pseudo)  # no class left: the output is the empty map
    else:
        masks = masks[1:2]  # only the small mask inside the pseudo-label: no envelope
    earlier = (d / "out" / "img1.png").stat().st_mtime - 5  # (file times may be coarser than this test is fast)
    os.utime(d / "out" / "img1.png", (earlier, earlier))
    write_dataset(d, {"img1": (pseudo, masks, gt)})
    result = runner.invoke(app, _run(d), env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "1 output(s) in " in result.output and "out of date (e.g. img1.png" in result.output
    counts = json.loads((d / "out" / "run.json").read_text())["counts"]
    assert counts["made_again_inputs_changed"] == 1 and counts["skipped_existing"] == 2 and counts["written"] == 1
    assert (d / "out" / "img1.png").read_bytes() != old
    again = runner.invoke(app, _run(d))  # and then it is up to date
    assert again.exit_code == 0 and "out of date" not in again.output


def test_convert_makes_outputs_of_regenerated_inputs_again(d: Path) -> None:
    argv = ["convert", "-r", "png", "-i", str(d / "pseudo"), "-o", str(d / "conv")]
    assert runner.invoke(app, argv).exit_code == 0
    items = _items()
    earlier = (d / "conv" / "img1.png").stat().st_mtime - 5  # (file times may be coarser than this test is fast)
    os.utime(d / "conv" / "img1.png", (earlier, earlier))
    pseudo, masks, gt = items["img1"]
    write_dataset(d, {"img1": (np.zeros_like(pseudo), masks, gt)})  # a regenerated input
    result = runner.invoke(app, argv, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "1 output(s) in " in result.output and "out of date (e.g. img1.png: its input file" in result.output
    assert not np.array(Image.open(d / "conv" / "img1.png")).any()  # the new input's labels, not the old ones
    counts = json.loads((d / "conv" / "convert.json").read_text())["counts"]
    assert counts["made_again_inputs_changed"] == 1 and counts["written"] == 1
    again = runner.invoke(app, argv)
    assert again.exit_code == 0 and "out of date" not in again.output and "0 written" in again.output


def test_compare_makes_outputs_of_regenerated_inputs_again(d: Path) -> None:
    args = ["compare", "-s", "threshold,official", "--pseudo-labels", str(d / "pseudo"), "--masks", str(d / "masks"),
            "--gt", str(d / "gt"), "--out", str(d / "cmp")]
    assert runner.invoke(app, args).exit_code == 0
    earlier = (d / "cmp" / "official" / "img0.png").stat().st_mtime - 5
    os.utime(d / "cmp" / "official" / "img0.png", (earlier, earlier))
    os.utime(d / "pseudo" / "img0.png")  # (touched: now)
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "1 image(s)' outputs in " in result.output and "(e.g. img0:" in result.output
    assert json.loads((d / "cmp" / "compare.json").read_text())["counts"]["outputs_reused"] == 4


def _copied_with_old_times(path: Path, write: Callable[[], None]) -> None:
    """``write`` a new ``path`` and give it a time well before now, as ``cp -p`` of an older file would."""
    write()
    old = path.stat().st_mtime - 3600
    os.utime(path, (old, old))


_COMMANDS = {  # each command's arguments, and the output folder whose made_from.jsonl it keeps
    "run": (lambda d: _run(d), "out"),
    "convert": (lambda d: ["convert", "-r", "png", "-i", str(d / "pseudo"), "-o", str(d / "conv")], "conv"),
    "compare": (lambda d: ["compare", "-s", "threshold,official", "--pseudo-labels", str(d / "pseudo"), "--masks",
                           str(d / "masks"), "--gt", str(d / "gt"), "--out", str(d / "cmp"), "--bootstrap", "0"],
                "cmp/official"),
}


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_an_input_copied_with_its_old_time_makes_its_output_again(d: Path, command: str) -> None:
    """(``cp -p`` or ``rsync -a`` of another version of a pseudo-label: older than the output, so
    make's rule reused the output made from the old one, and the scores were of labels made from
    inputs no longer there. Each folder's made_from.jsonl records the times its outputs were made from.)"""
    argv, folder = _COMMANDS[command]
    assert runner.invoke(app, argv(d)).exit_code == 0
    records = [json.loads(line) for line in (d / folder / "made_from.jsonl").read_text().splitlines()]
    assert "since" in records[0] and sorted(r["id"] for r in records[1:]) == ["img0", "img1", "img2"]
    assert {r["id"]: r["inputs"][0] for r in records[1:]}["img1"] == (d / "pseudo" / "img1.png").stat().st_ctime_ns
    pseudo, masks, gt = _items()["img1"]
    _copied_with_old_times(d / "pseudo" / "img1.png",
                           lambda: Image.fromarray(np.zeros_like(pseudo)).save(d / "pseudo" / "img1.png"))
    assert (d / "pseudo" / "img1.png").stat().st_mtime < (d / folder / "img1.png").stat().st_mtime
    result = runner.invoke(app, argv(d), env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "are out of date (e.g. img1" in result.output
    assert not np.array(Image.open(d / folder / "img1.png")).any()  # made from the copy (no class), not the old map
    again = runner.invoke(app, argv(d), env={"COLUMNS": "300"})
    assert again.exit_code == 0 and "out of date" not in again.output


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_a_folder_from_before_the_log_falls_back_to_makes_rule_and_then_has_one(d: Path, command: str) -> None:
    """(A folder made before made_from.jsonl existed: an output older than an input is made again,
    and so is one whose input was copied in after it with an old time (make's rule on the later of
    an input's two times); the others are kept, and from then on have their record.)"""
    argv, folder = _COMMANDS[command]
    assert runner.invoke(app, argv(d)).exit_code == 0
    for log in d.glob(f"{folder.split('/')[0]}/**/made_from.jsonl"):
        log.unlink()
    earlier = (d / folder / "img1.png").stat().st_mtime - 5
    os.utime(d / folder / "img1.png", (earlier, earlier))  # older than its inputs
    pseudo = _items()["img2"][0]
    _copied_with_old_times(d / "pseudo" / "img2.png",  # a copy with an old time, after the output
                           lambda: Image.fromarray(np.zeros_like(pseudo)).save(d / "pseudo" / "img2.png"))
    kept = (d / folder / "img0.png").read_bytes()
    result = runner.invoke(app, argv(d), env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "2 " in result.output and "are out of date (e.g. img1" in result.output
    assert not np.array(Image.open(d / folder / "img2.png")).any() and (d / folder / "img0.png").read_bytes() == kept
    from sepl_tree.outputs import MadeFrom

    records = MadeFrom(d / folder).read()
    assert sorted(records) == ["img0", "img1", "img2"]
    inputs = [d / "pseudo" / "img0.png"] + ([] if command == "convert" else [d / "masks" / "img0.json"])
    assert records["img0"] == tuple(path.stat().st_ctime_ns for path in inputs)  # kept, and now recorded
    again = runner.invoke(app, argv(d), env={"COLUMNS": "300"})
    assert again.exit_code == 0 and "out of date" not in again.output


def test_a_folder_from_before_the_log_resumed_on_some_ids_keeps_the_others(d: Path) -> None:
    """(The log starts with the run that makes it: the outputs of other ids, from before it, are
    still judged by make's rule, not taken for outputs written and never recorded.)"""
    (d / "out" / "made_from.jsonl").unlink()
    some = d / "some.txt"
    some.write_text("img1\n")
    assert runner.invoke(app, _run(d, "--ids", str(some))).exit_code == 0
    result = runner.invoke(app, _run(d), env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "made again" not in result.output
    assert json.loads((d / "out" / "run.json").read_text())["counts"]["written"] == 0


def test_an_image_level_labels_file_changed_makes_the_outputs_again(tmp_path: Path) -> None:
    """(--labels decides a CAM reader's classes, but only its path was in the settings: a new
    cls_labels.npy left every output as it was.)"""
    items = _items()
    write_dataset(tmp_path, items)
    cams = tmp_path / "cams"
    cams.mkdir()
    for image_id, (pseudo, _, _) in items.items():
        for c, score in ((0, 200), (1, 250)):  # classes 1 and 2 where class 1 is, class 2 the stronger
            Image.fromarray(((pseudo == 1) * score).astype(np.uint8)).save(cams / f"{image_id}_{c}.png")
    labels = tmp_path / "cls_labels.npy"
    np.save(labels, {i: np.eye(20, dtype=np.float32)[0] + np.eye(20, dtype=np.float32)[1] for i in items})
    argv = ["convert", "-r", "l2g", "-i", str(cams), "-o", str(tmp_path / "conv"), "--labels", str(labels)]
    assert runner.invoke(app, argv).exit_code == 0
    assert 2 in np.array(Image.open(tmp_path / "conv" / "img0.png"))
    np.save(labels, {i: np.eye(20, dtype=np.float32)[0] for i in items})  # class 2 no longer in the images
    result = runner.invoke(app, argv, env={"COLUMNS": "300"})
    assert result.exit_code == 0 and "3 output(s) in " in result.output, result.output
    assert "its input file or --labels changed since it was made" in result.output  # (named the input file only)
    assert 2 not in np.array(Image.open(tmp_path / "conv" / "img0.png"))


def test_an_output_the_log_does_not_account_for_is_made_again(d: Path) -> None:
    """(Each output's line is written before the run makes it, so every output a run of ours wrote
    has one; an output without one, here its line cut short, was made from what no one knows.)"""
    log = d / "out" / "made_from.jsonl"
    lines = log.read_text().splitlines()
    cut = json.loads(lines[-1])["id"]
    log.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:12])  # its line cut short
    result = runner.invoke(app, _run(d), env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert (f"1 output(s) in {d / 'out'} have no line in its made_from.jsonl (e.g. {cut}.png): what they were made "
            "from is unknown") in " ".join(result.output.split())
    from sepl_tree.outputs import MadeFrom

    assert sorted(MadeFrom(d / "out").read()) == ["img0", "img1", "img2"]  # its new line not lost in the cut one
    assert "out of date" not in runner.invoke(app, _run(d)).output


def _l2g_run(tmp_path: Path) -> tuple[list[str], Path]:
    """``run --reader l2g`` on the items as class-1 maps ``cams/<id>_0.png``, done once: its arguments and ``cams/``."""
    items = _items()
    write_dataset(tmp_path, items)
    cams = tmp_path / "cams"
    cams.mkdir()
    for image_id, (pseudo, _, _) in items.items():
        Image.fromarray(((pseudo == 1) * 255).astype(np.uint8)).save(cams / f"{image_id}_0.png")
    args = ["run", "--reader", "l2g", "--pseudo-labels", str(cams), "--masks", str(tmp_path / "masks"),
            "--out", str(tmp_path / "out")]
    assert runner.invoke(app, args).exit_code == 0
    return args, cams


def test_a_listed_id_a_per_class_reader_finds_no_file_of_is_one_line_before_any_work(tmp_path: Path) -> None:
    args, cams = _l2g_run(tmp_path)
    (tmp_path / "ids.txt").write_text("img0\nimg7\n")
    result = runner.invoke(app, [*args[:-1], str(tmp_path / "fresh"), "--ids", str(tmp_path / "ids.txt")],
                           env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert f"{cams}: no pseudo-label for image 'img7' (the 'l2g' reader finds no file of it in this folder)" in (
        " ".join(result.output.split()))
    assert not list((tmp_path / "fresh").glob("*.png"))


def test_a_per_class_map_added_with_an_old_time_makes_its_output_again(tmp_path: Path) -> None:
    """(l2g/rca: an image's pseudo-label is several <id>_<class>.png files. Only the newest time of
    them was recorded, so a class map copied in with an older one changed nothing that was checked.)"""
    args, cams = _l2g_run(tmp_path)
    before = (tmp_path / "out" / "img1.png").read_bytes()
    _copied_with_old_times(cams / "img1_1.png",  # a class-2 map, copied with an old time
                           lambda: Image.fromarray(np.full(SHAPE, 250, np.uint8)).save(cams / "img1_1.png"))
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "1 output(s) in " in result.output and "(e.g. img1.png" in result.output
    assert (tmp_path / "out" / "img1.png").read_bytes() != before


def test_convert_says_it_finished(d: Path) -> None:
    result = runner.invoke(app, ["convert", "-r", "png", "-i", str(d / "pseudo"), "-o", str(d / "c")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((d / "c" / "convert.json").read_text())
    assert manifest["status"] == "finished" and manifest["counts"]["written"] == 3


def test_a_folder_the_file_system_refuses_is_one_line(d: Path) -> None:
    """(Even root cannot create files in /sys; the checks before it see a folder that exists.)"""
    target = Path("/sys/kernel")
    if not target.is_dir() or os.access(target, os.W_OK) and _can_create_in(target):
        pytest.skip("needs a folder nobody can write into")
    result = runner.invoke(app, _run(d, out=str(target)))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "/sys/kernel/run.json: cannot write the file" in " ".join(result.output.split())


def _can_create_in(folder: Path) -> bool:
    try:
        (folder / ".sepl-probe").touch()
    except OSError:
        return False
    (folder / ".sepl-probe").unlink()
    return True


def test_an_empty_or_cut_output_is_not_done(d: Path) -> None:
    (d / "out" / "img0.png").write_bytes(b"")
    cut = (d / "out" / "img1.png").read_bytes()
    (d / "out" / "img1.png").write_bytes(cut[: len(cut) // 2])
    result = runner.invoke(app, _run(d))
    assert result.exit_code == 0, result.output
    counts = json.loads((d / "out" / "run.json").read_text())["counts"]
    assert counts["written"] == 2 and counts["skipped_existing"] == 1
    for image_id in ("img0", "img1"):
        with Image.open(d / "out" / f"{image_id}.png") as img:
            assert img.size == (SHAPE[1], SHAPE[0])


def test_eval_allow_missing_scores_the_rest_and_says_so(d: Path) -> None:
    (d / "ids.txt").write_text("img0\nimg1\nimg9\n")
    (d / "gt" / "img9.png").write_bytes((d / "gt" / "img0.png").read_bytes())
    result = runner.invoke(app, ["eval", "--pred", str(d / "out"), "--gt", str(d / "gt"), "--ids", str(d / "ids.txt"),
                                 "--allow-missing"])
    assert result.exit_code == 0, result.output
    assert "1 of 3 prediction file(s) are missing (e.g. img9.png); scoring the other 2" in " ".join(result.output.split())
    assert "(2 images)" in " ".join(result.output.split())  # (the table's title wraps with a long path)


def test_eval_json_says_what_was_scored(d: Path) -> None:
    """(It held the scores only: a saved score file could not be traced to its folders or K.)"""
    (d / "ids.txt").write_text("img0\nimg1\nimg9\n")
    (d / "gt" / "img9.png").write_bytes((d / "gt" / "img0.png").read_bytes())
    result = runner.invoke(app, ["eval", "--pred", str(d / "out"), "--gt", str(d / "gt"), "--ids", str(d / "ids.txt"),
                                 "--allow-missing", "--num-classes", "3", "--json", str(d / "s.json")])
    assert result.exit_code == 0, result.output
    doc = json.loads((d / "s.json").read_text())
    assert doc["images"] == 2 and len(doc["per_class"]) == 3
    assert doc["source"] == {"pred": str((d / "out").resolve()), "gt": str((d / "gt").resolve()), "num_classes": 3,
                             "ids": str((d / "ids.txt").resolve()), "missing_predictions": 1, "convention": "default",
                             "sepl_tree": __version__}


@pytest.mark.parametrize("where", ["pred", "gt"])
@pytest.mark.parametrize("allow_missing", [False, True])
def test_eval_a_folder_named_like_a_label_map_is_an_error_not_missing(d: Path, where: str, allow_missing: bool) -> None:
    """(It was 'file not found', and with --allow-missing a prediction left out without a word.)"""
    folder = d / ("out" if where == "pred" else "gt")
    (folder / "img1.png").unlink()
    (folder / "img1.png").mkdir()
    argv = ["eval", "--pred", str(d / "out"), "--gt", str(d / "gt")] + ["--allow-missing"] * allow_missing
    if where == "gt":  # (without --ids the predictions list the ids)
        argv += ["--ids", str(d / "ids.txt")]
        (d / "ids.txt").write_text("img0\nimg1\nimg2\n")
    result = runner.invoke(app, argv, env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    assert f"{folder / 'img1.png'}: is a folder, not a label map PNG" in " ".join(result.output.split())


def test_eval_without_ids_says_how_much_ground_truth_has_no_prediction(d: Path) -> None:
    (d / "gt" / "img9.png").write_bytes((d / "gt" / "img0.png").read_bytes())
    result = runner.invoke(app, ["eval", "--pred", str(d / "out"), "--gt", str(d / "gt")])
    assert result.exit_code == 0, result.output
    assert f"scoring the 3 image(s) with a prediction; 1 ground-truth file(s) in {d / 'gt'} have none" in (
        " ".join(result.output.split()))
    (d / "gt" / "img9.png").unlink()
    assert "ground-truth file(s)" not in runner.invoke(app, ["eval", "--pred", str(d / "out"), "--gt", str(d / "gt")]).output


def test_run_and_compare_say_how_much_ground_truth_has_no_pseudo_label(d: Path) -> None:
    """(They scored the images with a pseudo-label and said nothing of the others: a baseline's
    dump with images missing gave another mIoU without a word, where eval said so.)"""
    (d / "pseudo" / "img2.png").unlink()
    note = f"scoring the 2 image(s) with a pseudo-label; 1 ground-truth file(s) in {d / 'gt'} have none"
    result = runner.invoke(app, _run(d, "--gt", str(d / "gt"), out="scored"), env={"COLUMNS": "300"})
    assert result.exit_code == 0 and note in " ".join(result.output.split()), result.output
    assert json.loads((d / "scored" / "run.json").read_text())["eval"]["input"]["images"] == 2
    compared = runner.invoke(app, ["compare", "-s", "threshold", "--pseudo-labels", str(d / "pseudo"), "--masks",
                                   str(d / "masks"), "--gt", str(d / "gt"), "--out", str(d / "cmp")],
                             env={"COLUMNS": "300"})
    assert compared.exit_code == 0 and note in " ".join(compared.output.split()), compared.output
    (d / "ids.txt").write_text("img0\nimg1\n")  # the ids listed: nothing left out by chance
    result = runner.invoke(app, _run(d, "--gt", str(d / "gt"), "--ids", str(d / "ids.txt"), out="listed"))
    assert result.exit_code == 0 and "ground-truth file(s)" not in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_out_is_one_line(d: Path) -> None:
    _chmod_out_read_only(d)
    result = runner.invoke(app, _run(d, out="ro"))
    assert result.exit_code == 1 and "the folder is not writable" in result.output


def test_a_mask_folder_changed_after_its_output_makes_it_again(tmp_path: Path) -> None:
    """(amg.py's <id>/ layout: the folder's time is what changes when a mask file is replaced.)"""
    write_dataset(tmp_path, _items(), "png")
    args = ["run", "--pseudo-labels", str(tmp_path / "pseudo"), "--masks", str(tmp_path / "masks"),
            "--out", str(tmp_path / "out")]
    assert runner.invoke(app, args).exit_code == 0
    for name in ("img0", "img2"):  # older than their inputs, but made from them: the record decides, not make's rule
        earlier = (tmp_path / "out" / f"{name}.png").stat().st_mtime - 5
        os.utime(tmp_path / "out" / f"{name}.png", (earlier, earlier))
    (tmp_path / "masks" / "img0" / "0.png").replace(tmp_path / "masks" / "img0" / "moved.png")
    (tmp_path / "masks" / "img0" / "moved.png").replace(tmp_path / "masks" / "img0" / "0.png")  # the folder: now
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "1 output(s) in " in result.output and "(e.g. img0.png" in result.output
    assert json.loads((tmp_path / "out" / "run.json").read_text())["counts"]["made_again_inputs_changed"] == 1


def test_a_per_class_map_rewritten_after_its_output_makes_it_again(tmp_path: Path) -> None:
    """(l2g/rca: an image's pseudo-label is several <id>_<class>.png files, which the stale check
    did not look at: a regenerated map left the old output in place, scored as the new one.)"""
    args, cams = _l2g_run(tmp_path)
    for image_id in _items():
        earlier = (tmp_path / "out" / f"{image_id}.png").stat().st_mtime - 5
        os.utime(tmp_path / "out" / f"{image_id}.png", (earlier, earlier))
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(cams / "img1_0.png")  # regenerated: now
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "1 output(s) in " in result.output and "(e.g. img1.png" in result.output
    counts = json.loads((tmp_path / "out" / "run.json").read_text())["counts"]
    assert counts["made_again_inputs_changed"] == 1 and counts["skipped_existing"] == 2


@pytest.mark.parametrize("pred, gt, message", [
    (np.zeros((4, 5), np.uint8), np.zeros((6, 5), np.uint8), "pred/a.png: is 4x5 but the ground truth {d}/gt/a.png is 6x5"),
    (np.zeros((4, 5), np.uint8), np.full((4, 5), 30, np.uint8), "gt/a.png: ground-truth value 30 is out of range 0..20 or 255 (more classes? set --num-classes, e.g. 81 for COCO)"),
    (np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), np.uint8),
     "pred/a.png: a label PNG must be palette or greyscale, got pixels of shape (4, 5, 3)"),
    (None, np.zeros((4, 5), np.uint8), "pred: no .png label maps to evaluate"),
])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_eval_refuses_bad_input_in_one_line(tmp_path: Path, pred, gt, message, workers) -> None:
    for name, label in (("pred", pred), ("gt", gt)):
        (tmp_path / name).mkdir()
        if label is not None:
            Image.fromarray(label).save(tmp_path / name / "a.png")
    result = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                                 "--workers", workers, "--json", str(tmp_path / "s.json")], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and message.format(d=tmp_path) in errors[0]
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("missing", ["pred", "gt"])
def test_eval_names_a_missing_folder(tmp_path: Path, missing: str) -> None:
    (tmp_path / ({"pred", "gt"} - {missing}).pop()).mkdir()
    result = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")])
    what = {"pred": "prediction", "gt": "ground-truth"}[missing]
    assert result.exit_code == 1 and f"{tmp_path / missing}: {what} folder not found" in result.output


def test_a_reader_may_return_labels_of_another_integer_dtype(d: Path) -> None:
    _reader_plugin("return label.astype(np.int64)")(d)  # what np.argmax gives
    result = runner.invoke(app, _with_reader(d, "run"))
    assert result.exit_code == 0, result.output
    made = sorted((d / "out").glob("*.png"))  # by the png reader
    assert len(made) == 3
    for path in made:
        assert path.read_bytes() == (d / "fresh" / path.name).read_bytes(), path.name


@pytest.mark.parametrize("workers", ["1", "2"])
def test_eval_says_when_predictions_hold_values_that_are_no_label(tmp_path: Path, workers: str) -> None:
    """(Raw COCO category ids, up to 90, scored at K = 81: by the convention a miss, but never meant.)"""
    for name in ("pred", "gt"):
        (tmp_path / name).mkdir()
    for i, value in enumerate([90, 3, 255]):
        Image.fromarray(np.full((4, 5), value, np.uint8)).save(tmp_path / "pred" / f"im{i}.png")
        Image.fromarray(np.full((4, 5), 3, np.uint8)).save(tmp_path / "gt" / f"im{i}.png")
    result = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                                 "--num-classes", "81", "--workers", workers], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert (f"1 of 3 predictions hold values that are no label at K = 81 (e.g. {tmp_path / 'pred' / 'im0'}.png: 90); "
            "they count as misses of the GT class (README, Conventions) (COCO's category ids, 1..90, for its class "
            "indices 1..80? sepl-tree coco-gt writes class indices)") in " ".join(result.output.split())  # (255 is not reported)
    assert "mIoU over 1 of 81 classes (a class absent from both ground truth and prediction is left out" in (
        " ".join(result.output.split()))


def test_a_16_bit_label_png_beyond_255_is_no_num_classes_matter(tmp_path: Path) -> None:
    from sepl_tree.errors import InputError
    from sepl_tree.files import read_label_png

    path = tmp_path / "a.png"
    Image.fromarray(np.array([[0, 1000]], np.uint16)).save(path)
    with pytest.raises(InputError) as caught:
        read_label_png(path, 21)
    assert str(caught.value) == (f"{path}: label value 1000 is out of range 0..20 or 255 (no K can hold it: labels "
                                 "are 0..254 and 255; is this a label map?)")
    Image.fromarray(np.array([[0, 30]], np.uint16)).save(path)
    with pytest.raises(InputError, match=r"label value 30 is out of range 0\.\.20 or 255 \(more classes\? set "
                                         r"--num-classes, e.g\. 81 for COCO\)"):
        read_label_png(path, 21)
    assert read_label_png(path, 31).tolist() == [[0, 30]]


def test_the_missing_masks_rule_may_change_on_a_rerun_and_no_output_is_reused_wrongly(d: Path) -> None:
    """(It refused the rerun, though the inputs' record already keys what the rule changes: an output
    of an image without masks is recorded as made from no masks, so it is made again once they appear.)"""
    result = runner.invoke(app, _run(d, "--missing-masks", "keep"))  # error -> keep: every output had masks
    assert result.exit_code == 0, result.output
    assert json.loads((d / "out" / "run.json").read_text())["counts"]["written"] == 0
    assert json.loads((d / "out" / "run.json").read_text())["settings"]["missing_masks"] == "keep"
    masks = d / "masks" / "img1.json"
    masks.rename(d / "img1.json")
    result = runner.invoke(app, _run(d, "--missing-masks", "keep", "--gt", str(d / "gt")))
    assert result.exit_code == 0, result.output  # img1 is made again without masks: its pseudo-label, as it is
    assert (read_label_png(d / "out" / "img1.png", 21) == _items()["img1"][0]).all()
    refused = runner.invoke(app, _run(d))  # keep -> error, with img1 still without masks: refused before any work
    assert refused.exit_code == 1 and "img1" in refused.output
    (d / "img1.json").rename(masks)
    result = runner.invoke(app, _run(d), env={"COLUMNS": "300"})  # keep -> error, img1 has masks again
    assert result.exit_code == 0, result.output
    assert "1 output(s) in" in " ".join(result.output.split())  # out of date: made again with its masks
    assert not (read_label_png(d / "out" / "img1.png", 21) == _items()["img1"][0]).all()


def test_compare_takes_another_missing_masks_rule_on_a_rerun(d: Path) -> None:
    args = ["compare", "-s", "threshold", "--pseudo-labels", str(d / "pseudo"), "--masks", str(d / "masks"),
            "--gt", str(d / "gt"), "--out", str(d / "cmp"), "--bootstrap", "0"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, [*args, "--missing-masks", "keep"])
    assert result.exit_code == 0, result.output
    doc = json.loads((d / "cmp" / "threshold" / "run.json").read_text())
    assert doc["settings"]["missing_masks"] == "keep" and doc["counts"]["written"] == 0  # resumed, nothing redone


def test_a_rerun_with_other_reader_parameters_is_refused(d: Path) -> None:
    """(They are run settings: outputs made with them are not reused for another value.)"""
    cams = d / "cams"
    cams.mkdir()
    for image_id, (pseudo, _, _) in _items().items():
        Image.fromarray(((pseudo == 1) * 255).astype(np.uint8)).save(cams / f"{image_id}_0.png")
    args = ["run", "--reader", "l2g", "--pseudo-labels", str(cams), "--masks", str(d / "masks"), "--out", str(d / "l2g")]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, [*args, "--param", "bg=0.5"], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert "made with other settings (reader_params.bg 0.25 -> 0.5)" in " ".join(result.output.split())


def test_compare_makes_an_image_again_when_one_strategys_output_is_older_than_its_inputs(d: Path) -> None:
    """(An image has one output per strategy: under make's rule, in folders from before the log,
    the oldest of them decides, not the newest.)"""
    args = ["compare", "-s", "threshold,official", "--pseudo-labels", str(d / "pseudo"), "--masks", str(d / "masks"),
            "--gt", str(d / "gt"), "--out", str(d / "cmp"), "--subset", "all"]
    assert runner.invoke(app, args).exit_code == 0
    for name in ("threshold", "official"):
        (d / "cmp" / name / "made_from.jsonl").unlink()
    now = (d / "cmp" / "official" / "img1.png").stat().st_mtime
    os.utime(d / "cmp" / "threshold" / "img1.png", (now - 20, now - 20))  # made before the inputs changed
    for path in (d / "pseudo" / "img1.png", d / "masks" / "img1.json"):
        os.utime(path, (now - 10, now - 10))
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "1 image(s)' outputs in" in " ".join(result.output.split())
    assert json.loads((d / "cmp" / "compare.json").read_text())["counts"]["outputs_computed"] == 2



def test_a_colour_label_png_or_a_16_bit_value_of_256_is_refused_not_read(tmp_path: Path) -> None:
    """(A VOC SegmentationClass PNG saved as RGB would be read as three channels of colour; a
    16-bit 256 would wrap to 0, background, in uint8.)"""
    from sepl_tree.errors import InputError
    from sepl_tree.files import read_label_png

    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(rgb)
    with pytest.raises(InputError, match=r"rgb\.png: a label PNG must be palette or greyscale, got 3-D pixels"):
        read_label_png(rgb, 21)
    wide = tmp_path / "wide.png"
    Image.fromarray(np.array([[0, 256]], np.uint16)).save(wide)
    with pytest.raises(InputError, match="label value 256 is out of range 0..20 or 255"):
        read_label_png(wide, 21)


@pytest.mark.parametrize("image_id", ["a/../../x", "a/..", "./../x", "/abs"])
def test_an_id_that_climbs_out_anywhere_in_its_path_is_refused(tmp_path: Path, image_id: str) -> None:
    from sepl_tree.cli.common import read_ids
    from sepl_tree.errors import SeplError

    ids = tmp_path / "ids.txt"
    ids.write_text(f"img0\n{image_id}\n")
    with pytest.raises(SeplError, match="would name a file outside the folders"):
        read_ids(ids)
    ids.write_text("img0\nsub/img1\n")
    assert read_ids(ids) == ["img0", "sub/img1"]  # a sub-folder of the folder is fine


def test_a_listing_reader_without_a_suffix_records_its_files(tmp_path: Path) -> None:
    """(A plugin reader may list its own ids and read files with no suffix: ``name[:-0]`` is ``""``,
    so every file was counted for the id "" and the real ids recorded no pseudo-label at all.)"""
    plugin = tmp_path / "raw.py"
    plugin.write_text(
        "import numpy as np\n"
        "from sepl_tree import Reader, hookimpl\n\n"
        "def list_ids(folder):\n"
        "    return sorted(p.name for p in folder.iterdir() if p.is_file())\n\n"
        "def read_raw(folder, image_id, ctx):\n"
        "    return np.frombuffer((folder / image_id).read_bytes(), np.uint8).reshape(2, 3).copy()\n\n"
        "@hookimpl\n"
        "def register_readers(register):\n"
        "    register(Reader('raw', read_raw, suffix='', list_ids=list_ids))\n")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "x").write_bytes(bytes([3] * 6))
    argv = ["convert", "-r", "raw", "-i", str(raw), "-o", str(tmp_path / "conv"), "--plugin", str(plugin)]
    first = runner.invoke(app, argv)
    assert first.exit_code == 0, first.output
    (raw / "x").write_bytes(bytes([5] * 6))
    result = runner.invoke(app, argv, env={"COLUMNS": "300"})
    assert result.exit_code == 0 and "1 output(s) in " in result.output, result.output
    assert set(np.array(Image.open(tmp_path / "conv" / "x.png")).ravel()) == {5}
