"""``sepl-tree tree``: draw one image's containment tree with mask thumbnails."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sepl_tree.cli.common import ImagesOpt, console, run_guarded
from sepl_tree.errors import SeplError
from sepl_tree.files import atomic_write_bytes
from sepl_tree.registry import Tau

__all__ = ["tree_command"]


def tree_command(
    masks: Annotated[Path, typer.Option("--masks", metavar="DIR", help="Folder of SAM masks (amg.py layouts).")],
    image_id: Annotated[str, typer.Option("--id", metavar="ID", help="The image id.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FILE.png", help="The PNG to write.")],
    images: ImagesOpt = None,
    tau: Annotated[float, typer.Option("--tau", metavar="SHARE", help="A parent holds this share of its child, in (0, 1].")] = 0.9,
) -> None:
    """Draw one image's containment tree: each mask as a thumbnail, parents above children."""

    def body() -> None:
        from sepl_tree.images import read_image
        from sepl_tree.masks import read_masks
        from sepl_tree.report import draw_tree
        from sepl_tree.tree import build_tree

        if out.suffix.lower() != ".png" or out.is_dir():
            raise SeplError(f"--out {out}: the tree is drawn as a PNG; give a file name ending in .png")
        if tau not in Tau.__metadata__[0]:
            raise SeplError(f"--tau must be in {Tau.__metadata__[0]}, got {tau!r}")
        if not masks.is_dir():
            raise SeplError(f"{masks}: mask folder not found")
        # Any PNG under --masks is read as a mask; under --images only an existing file is an input.
        inside = [("--masks", masks)] + ([("--images", images)] if images is not None and out.exists() else [])
        for option, folder in inside:
            if out.resolve().is_relative_to(folder.resolve()):
                raise SeplError(f"--out {out} is inside {option} {folder}: the drawing could replace an input; "
                                "choose another --out")
        image = None if images is None else read_image(images, image_id)
        maskset = read_masks(masks, image_id, None if image is None else image.shape[:2])
        tree = build_tree(maskset, tau=tau)
        depth = max((d for _, d in tree.nodes(data="depth")), default=0)
        roots = sum(1 for n in tree.nodes if tree.in_degree(n) == 0)
        png = draw_tree(tree, maskset.dense, image, title=f"{image_id}: {len(maskset)} masks, {roots} roots, "
                                                          f"depth {depth}, tau={tau}")
        atomic_write_bytes(out, png)
        console.print(f"{image_id}: {len(maskset)} masks, {roots} roots, max depth {depth} -> {out}")

    run_guarded(body)
