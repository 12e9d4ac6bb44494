"""A tiny SAM 2 for tests: the sam2 package's real modules, small sizes, random weights.

Also a sepl-tree plugin (``--plugin tests/tiny_sam2.py``) registering the model type
``tiny-sam2`` (family ``sam2``). The checkpoint is saved as sam2's are, ``{"model": state_dict}``,
and loaded through the same function as the built-in SAM 2 types. The model sees 256x256
inputs: a 5-block Hiera trunk (dim 8, one global-attention block), an FPN neck and SAM heads
of width 32, and one-layer memory modules (unused on images, but part of every SAM 2).
"""

from __future__ import annotations

from pathlib import Path

import torch

from sepl_tree import hookimpl
from sepl_tree.sam.models import SamBuilder, load_state_dict

__all__ = ["MODEL_TYPE", "build_tiny_sam2", "register_sam_models", "save_tiny_sam2_checkpoint"]

MODEL_TYPE = "tiny-sam2"
IMAGE_SIZE, DIM, MEM_DIM = 256, 32, 16


def _memory_modules():
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention

    grid = IMAGE_SIZE // 16
    rope = dict(rope_theta=10000.0, feat_sizes=(grid, grid), embedding_dim=DIM, num_heads=1, downsample_rate=1,
                dropout=0.1)
    layer = MemoryAttentionLayer(
        activation="relu", d_model=DIM, dim_feedforward=2 * DIM, dropout=0.1, pos_enc_at_attn=False,
        pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
        self_attention=RoPEAttention(**rope), cross_attention=RoPEAttention(rope_k_repeat=True, kv_in_dim=MEM_DIM, **rope))
    attention = MemoryAttention(d_model=DIM, pos_enc_at_input=True, layer=layer, num_layers=1)
    encoder = MemoryEncoder(
        out_dim=MEM_DIM, in_dim=DIM,
        mask_downsampler=MaskDownSampler(embed_dim=DIM, kernel_size=3, stride=2, padding=1),
        fuser=Fuser(CXBlock(dim=DIM, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True),
                    num_layers=1),
        position_encoding=PositionEmbeddingSine(num_pos_feats=MEM_DIM, normalize=True))
    return attention, encoder


def build_tiny_sam2(checkpoint: str | None = None):
    """A ``SAM2Base`` with SAM 2.1's options (high-resolution features, sigmoid IoU, object scores)."""
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam2_base import SAM2Base

    trunk = Hiera(embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                  window_pos_embed_bkg_spatial_size=(4, 4), window_spec=(4, 4, 4, 2))
    neck = FpnNeck(PositionEmbeddingSine(num_pos_feats=DIM, normalize=True), d_model=DIM,
                   backbone_channel_list=trunk.channel_list, fpn_top_down_levels=[2, 3], fpn_interp_model="nearest")
    attention, memory = _memory_modules()
    model = SAM2Base(
        ImageEncoder(trunk, neck, scalp=1), attention, memory, num_maskmem=7, image_size=IMAGE_SIZE,
        sigmoid_scale_for_mem_enc=20.0, sigmoid_bias_for_mem_enc=-10.0, use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True, no_obj_embed_spatial=True, use_high_res_features_in_sam=True,
        multimask_output_in_sam=True, iou_prediction_use_sigmoid=True, use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=True, proj_tpos_enc_in_obj_ptrs=True, use_signed_tpos_enc_to_obj_ptrs=True,
        only_obj_ptrs_in_the_past_for_eval=True, pred_obj_scores=True, pred_obj_scores_mlp=True,
        fixed_no_obj_ptr=True, multimask_output_for_tracking=True, use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0, multimask_max_pt_num=1, use_mlp_for_obj_ptr_proj=True,
        # What sam2's build_sam2 adds for image use (apply_postprocessing=True).
        sam_mask_decoder_extra_args={"dynamic_multimask_via_stability": True,
                                     "dynamic_multimask_stability_delta": 0.05,
                                     "dynamic_multimask_stability_thresh": 0.98},
    )
    return load_state_dict(model, checkpoint, key="model")


def save_tiny_sam2_checkpoint(path: Path, seed: int = 0) -> Path:
    """Save a freshly initialised tiny SAM 2 (seeded) as sam2 saves its checkpoints."""
    torch.manual_seed(seed)
    torch.save({"model": build_tiny_sam2().state_dict()}, path)
    return path


@hookimpl
def register_sam_models(register):
    register(MODEL_TYPE, SamBuilder("sam2", build_tiny_sam2))


if __name__ == "__main__":  # python tests/tiny_sam2.py tiny_sam2.pt
    import sys

    print(save_tiny_sam2_checkpoint(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny_sam2.pt")))
