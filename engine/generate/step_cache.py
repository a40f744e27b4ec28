"""A step cache for the UNet (the idea of DeepCache, Ma et al., CVPR 2024): the deep features
change little from one denoising step to the next, so they are computed on every N-th step
only and reused between.

On a full step the UNet runs as usual, and the features entering its last up block (the output
of the deep path: down blocks 1.., mid block, up blocks ..-2) are kept. On the N-1 shallow
steps after it only ``conv_in``, the first down block, the last up block (fed with the kept
features and the fresh skip connections of this step) and the output layers run. The schedule
is uniform: full at model calls 0, N, 2N..., counted per denoising run, so the first call of
every run is full.

ControlNet: its model still runs on every step; on a shallow step the residuals it adds to the
skip connections the last up block reads apply, and its deep ones (the other down residuals
and the mid-block residual) act through the kept features of the last full step.

Installed on the UNet for one denoising run by ``step_cache`` and removed after it, whatever
happens, so a changed setting applies to the next job without reloading the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

logger = logging.getLogger(__name__)

MIN_INTERVAL = 2  # 0 and 1 mean every step is full: no cache


def unsupported_reason(unet: Any) -> str | None:
    """Why the cache cannot run on ``unet``; None when it can."""
    if hasattr(unet, "_orig_mod") or getattr(unet, "_compiled_call_impl", None) is not None:
        # A shallow step is another graph: a compiled UNet would recompile at each switch.
        return "the UNet is compiled"
    if len(unet.down_blocks) < 2 or len(unet.up_blocks) < 2:
        return "the UNet has no deep blocks to skip"
    if unet.config.addition_embed_type == "image_hint":
        return "the UNet takes a hint image"
    if len(_shallow_skips_available(unet)) < len(unet.up_blocks[-1].resnets):
        return "the last up block reads skip connections of deeper blocks"
    return None


def _shallow_skips_available(unet: Any) -> list[str]:
    """What conv_in and the first down block push onto the skip stack, in order."""
    first = unet.down_blocks[0]
    skips = ["conv_in"] + [f"resnet {i}" for i in range(len(first.resnets))]
    if getattr(first, "downsamplers", None) is not None:
        skips.append("downsampler")
    return skips


class StepCache:
    """Counts the UNet's calls in one denoising run and answers each from the cache or not.

    ``full_calls``/``shallow_calls`` say what ran (for the log and tests).
    """

    def __init__(self, unet: Any, interval: int) -> None:
        self.unet = unet
        self.interval = interval
        self.calls = 0
        self.full_calls = 0
        self.shallow_calls = 0
        self._deep: torch.Tensor | None = None
        self._full_forward = unet.forward  # bound; may be an accelerate offload wrapper

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                *args: Any, **kwargs: Any) -> Any:
        step = self.calls
        self.calls += 1
        if step % self.interval != 0 and self._can_reuse(sample, args, kwargs):
            self.shallow_calls += 1
            return self._shallow(sample, timestep, encoder_hidden_states, **kwargs)
        self.full_calls += 1
        return self._full(sample, timestep, encoder_hidden_states, *args, **kwargs)

    def _can_reuse(self, sample: torch.Tensor, args: tuple, kwargs: dict) -> bool:
        deep = self._deep
        if args or deep is None:
            return False  # positional extras: a caller this was not written for
        if deep.shape[0] != sample.shape[0] or deep.shape[-2:] != sample.shape[-2:]:
            return False  # another batch or size than the kept features were made for
        if kwargs.get("down_intrablock_additional_residuals") is not None:
            return False  # T2I-Adapter residuals enter the deep blocks: not supported
        if (kwargs.get("down_block_additional_residuals") is None) != \
                (kwargs.get("mid_block_additional_residual") is None):
            return False  # the legacy adapter form of the same
        gligen = (kwargs.get("cross_attention_kwargs") or {}).get("gligen")
        return gligen is None

    def _full(self, *args: Any, **kwargs: Any) -> Any:
        """The UNet as it is, keeping what enters its last up block."""
        def keep(_module, _args, block_kwargs):
            self._deep = block_kwargs["hidden_states"].detach()

        handle = self.unet.up_blocks[-1].register_forward_pre_hook(keep, with_kwargs=True)
        try:
            return self._full_forward(*args, **kwargs)
        finally:
            handle.remove()

    def _shallow(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                 *, class_labels: torch.Tensor | None = None,
                 timestep_cond: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 cross_attention_kwargs: dict[str, Any] | None = None,
                 added_cond_kwargs: dict[str, torch.Tensor] | None = None,
                 down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
                 mid_block_additional_residual: torch.Tensor | None = None,
                 down_intrablock_additional_residuals: Any = None,
                 encoder_attention_mask: torch.Tensor | None = None,
                 return_dict: bool = True) -> Any:
        """UNet2DConditionModel.forward (diffusers 0.42) with the deep path replaced by the
        kept features; the mid-block residual is in those already."""
        unet = self.unet
        attention_mask = _as_bias(attention_mask, sample.dtype)
        encoder_attention_mask = _as_bias(encoder_attention_mask, sample.dtype)
        if unet.config.center_input_sample:
            sample = 2 * sample - 1.0
        emb = _time_embedding(unet, sample, timestep, timestep_cond, class_labels,
                              encoder_hidden_states, added_cond_kwargs)
        encoder_hidden_states = unet.process_encoder_hidden_states(
            encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs)
        cross = {"encoder_hidden_states": encoder_hidden_states, "attention_mask": attention_mask,
                 "cross_attention_kwargs": cross_attention_kwargs,
                 "encoder_attention_mask": encoder_attention_mask}

        sample = unet.conv_in(sample)
        first, last = unet.down_blocks[0], unet.up_blocks[-1]
        if getattr(first, "has_cross_attention", False):
            _, skips = first(hidden_states=sample, temb=emb, **cross)
        else:
            _, skips = first(hidden_states=sample, temb=emb)
        # The last up block reads the bottom of the skip stack: conv_in's output first.
        skips = (sample, *skips)[:len(last.resnets)]
        if down_block_additional_residuals is not None:
            skips = tuple(skip + residual for skip, residual
                          in zip(skips, down_block_additional_residuals, strict=False))

        assert self._deep is not None  # _can_reuse checked it
        if getattr(last, "has_cross_attention", False):
            sample = last(hidden_states=self._deep, temb=emb, res_hidden_states_tuple=skips,
                          upsample_size=None, **cross)
        else:
            sample = last(hidden_states=self._deep, temb=emb, res_hidden_states_tuple=skips,
                          upsample_size=None)

        if unet.conv_norm_out:
            sample = unet.conv_act(unet.conv_norm_out(sample))
        sample = unet.conv_out(sample)
        if not return_dict:
            return (sample,)
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        return UNet2DConditionOutput(sample=sample)


def _as_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A keep(1)/discard(0) mask as an additive bias, as the UNet's forward makes it."""
    if mask is None:
        return None
    return ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)


def _time_embedding(unet: Any, sample: torch.Tensor, timestep: Any,
                    timestep_cond: torch.Tensor | None, class_labels: torch.Tensor | None,
                    encoder_hidden_states: torch.Tensor,
                    added_cond_kwargs: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """Step 1 of the UNet's forward, through its own helpers (cheap: computed every step)."""
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep),
                              timestep_cond)
    class_emb = unet.get_class_embed(sample=sample, class_labels=class_labels)
    if class_emb is not None:
        emb = torch.cat([emb, class_emb], dim=-1) if unet.config.class_embeddings_concat \
            else emb + class_emb
    aug_emb = unet.get_aug_embed(emb=emb, encoder_hidden_states=encoder_hidden_states,
                                 added_cond_kwargs=added_cond_kwargs)
    if aug_emb is not None:
        emb = emb + aug_emb
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)
    return emb


def usable_interval(unet: Any, interval: int) -> int:
    """The interval a job on ``unet`` runs with: ``interval``, or 0 (off) when it is under 2
    or the UNet cannot take the cache (logged, so a slower job than asked has a reason)."""
    if interval < MIN_INTERVAL:
        return 0
    reason = unsupported_reason(unet)
    if reason is not None:
        logger.info("step cache off for this job: %s", reason)
        return 0
    return interval


@contextmanager
def step_cache(unet: Any, interval: int) -> Iterator[StepCache | None]:
    """The cache on ``unet`` for one denoising run (None when ``interval`` is off); the UNet's
    own forward is back when the block ends, also on an error or a cancel. Check the interval
    with ``usable_interval`` first."""
    if interval < MIN_INTERVAL:
        yield None
        return
    cache = StepCache(unet, interval)
    had_own = "forward" in vars(unet)  # e.g. accelerate's CPU-offload wrapper
    previous = vars(unet).get("forward")
    unet.forward = cache.forward
    try:
        yield cache
    finally:
        if had_own:
            unet.forward = previous
        else:
            del unet.forward
        cache._deep = None
        logger.debug("step cache: %d full and %d shallow UNet calls", cache.full_calls,
                     cache.shallow_calls)
