"""A tiny SAM for tests: segment-anything's real modules, small sizes, random weights.

Also a sepl-tree plugin (``--plugin tests/tiny_sam.py``) registering the model type ``tiny``.
The image encoder sees 64x64 inputs in 8x8 patches; everything else is scaled down to match.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from sepl_tree import hookimpl
from sepl_tree.sam.models import load_state_dict

__all__ = ["MODEL_TYPE", "build_tiny_sam", "register_sam_models", "save_tiny_checkpoint"]

MODEL_TYPE = "tiny"
IMG_SIZE, PATCH, DIM = 64, 8, 32


def build_tiny_sam(checkpoint: str | None = None):
    """A ``Sam`` with a 2-block ViT encoder (dim 32) and a 1-layer two-way transformer decoder."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = IMG_SIZE // PATCH
    model = Sam(
        image_encoder=ImageEncoderViT(
            img_size=IMG_SIZE, patch_size=PATCH, embed_dim=DIM, depth=2, num_heads=2, mlp_ratio=2,
            out_chans=DIM, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True, window_size=4, global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=DIM, image_embedding_size=(grid, grid), input_image_size=(IMG_SIZE, IMG_SIZE),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=DIM, num_multimask_outputs=3, iou_head_depth=2, iou_head_hidden_dim=DIM,
            transformer=TwoWayTransformer(depth=1, embedding_dim=DIM, num_heads=2, mlp_dim=2 * DIM),
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return load_state_dict(model, checkpoint)


def save_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """Save the state dict of a freshly initialised tiny SAM (seeded) to ``path``."""
    torch.manual_seed(seed)
    torch.save(build_tiny_sam().state_dict(), path)
    return path


@hookimpl
def register_sam_models(register):
    register(MODEL_TYPE, build_tiny_sam)


if __name__ == "__main__":  # python tests/tiny_sam.py tiny.pth
    import sys

    print(save_tiny_checkpoint(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny.pth")))
