"""What our model computes for each tensor a reference case stores (`alit verify-reference`).

The intermediate tensors of a rollout are read through forward hooks on the model's submodules
(`recorded`); the model itself holds no verification switch. Keys: tests/reference/README.md.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from .model.alit import ALIT, Rollout
from .model.halting import Halting


def _input(args: tuple, out) -> torch.Tensor:
    return args[0]


def _output(args: tuple, out) -> torch.Tensor:
    return out


def _taps(model: ALIT) -> list[tuple[str, nn.Module, Callable]]:
    """(key, submodule, what of each call to record): the stored tensors that no `Rollout` field
    holds. "pre/" keys are recorded once per rollout, the others once per iteration."""
    enc, dec = model.encoder, model.decoder
    taps = [("pre/patch_embed_out", enc.patch_embed, _output),
            ("pre/encoder_ln_pre_in", enc.ln_pre, _input),
            ("pre/encoder_ln_pre_out", enc.ln_pre, _output),
            ("encoder_in", enc.blocks, _input),
            ("encoder_out", enc.blocks, _output),
            ("latent_tokens_pre_ln_post", enc.ln_post, _input),
            ("latent_tokens_post_ln_post", enc.ln_post, _output),
            ("latent_factorized", enc.to_latent, _output),
            ("decoder_ln_pre_in", dec.ln_pre, _input)]
    if model.quantizer is not None:
        taps += [("quantizer_commitment_loss", model.quantizer, lambda args, q: q.commitment_loss),
                 ("quantizer_codebook_loss", model.quantizer, lambda args, q: q.codebook_loss)]
    return taps


@contextlib.contextmanager
def recorded(model: ALIT) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Forward hooks on the model's submodules while the block runs: key -> one tensor per call."""
    calls: dict[str, list[torch.Tensor]] = {}
    handles = []
    for key, module, pick in _taps(model):
        calls[key] = []

        def hook(module, args, out, values=calls[key], pick=pick):
            values.append(pick(args, out))

        handles.append(module.register_forward_hook(hook))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def rollout_tensors(model: ALIT, images: torch.Tensor, halting: Halting) -> dict:
    """Every tensor of one rollout (no gradients) that a reference case stores, by its key."""
    with torch.no_grad(), recorded(model) as calls:
        roll = model.rollout(images, halting)
        out = {"pre/decoder_masked_2d_tokens": model.decoder.queries(images.shape[0])}
    for key, values in calls.items():
        out.update({key: values[0]} if key.startswith("pre/") else
                   {f"iter{t}/{key}": v for t, v in enumerate(values)})
    for t, codes in enumerate(roll.codes):
        out[f"iter{t}/decoded_code"] = codes
        out[f"iter{t}/reconstructed_imgs"] = roll.reconstructions[t]
        if roll.ids is not None:
            out[f"iter{t}/latent_quantized"] = roll.latents[t]
            out[f"iter{t}/quantizer_indices"] = roll.ids[t]
            out[f"iter{t}/quantizer_loss"] = roll.quantizer_losses[t]
        if roll.logits is not None:
            out[f"iter{t}/decoder_logits"] = roll.logits[t]
            probs = roll.logits[t].softmax(-1, dtype=torch.float32)  # as the model halts on it
            out[f"iter{t}/pred_gt_index_prob"] = probs.gather(-1, roll.targets.ids[..., None])[..., 0]
    if halting.mode != "off":
        out.update(halting_tensors(model, roll, out, halting))
    return out


def halting_tensors(model: ALIT, roll: Rollout, out: dict, halting: Halting) -> dict:
    """The halting keys of every iteration, by the model's own rule and masking. The paper's code
    also halts after the last iteration (ours skips it: it changes no output), so the masks are
    recomputed here; "paper" halting of a VQGAN-based model needs `halting.draws` for that."""
    res = {}
    with torch.no_grad():
        for t, codes in enumerate(roll.codes):
            x = out[f"iter{t}/encoder_out"]  # [B, 1+N+L, W]: no error feedback in the paper's models
            if model.is_vqgan:
                p = out[f"iter{t}/pred_gt_index_prob"]
                mask = halting.mask(t, p, None)
                if halting.mode == "paper":
                    res.update({f"iter{t}/bernoulli_p": p, f"iter{t}/drop_mask": mask.float(),
                                f"iter{t}/bernoulli_draw": halting.draws[t].to(p.device, p.dtype)})
            else:
                err = (codes - roll.targets.codes).abs().mean(-1)  # [B, N]
                mask = halting.mask(t, None, err)
                res[f"iter{t}/halting_abs_err_mean"] = err
                res[f"iter{t}/intended_drop_mask"] = (err < halting.threshold).float()
            res[f"iter{t}/halting_x_out"] = x if mask is None else model.encoder.halt(x, mask)
    return res


def base_tensors(m: ALIT, x: torch.Tensor) -> dict:
    """The base tokenizer's tensors of images x that a reference case stores, by key."""
    out = {}
    with torch.no_grad():
        if m.is_vqgan:
            h = m.base.encode(x)
            ids = m.base.quantize_ids(h)
            code = m.base.codebook[ids].transpose(1, 2).reshape(h.shape)  # [B, C, G, G]
            z_q = h + (code - h)  # the straight-through form the paper stores
            out.update({"base/encoder_out_h": h, "base/gt_indices": ids, "base/z_q": z_q,
                        "base/decode_z_q": m.base.decode(z_q),
                        "base/decode_codebook_gt": m.base.decode(code)})
        else:
            mean, logvar = m.base.moments(x)
            scaled = mean * m.config.base.scale_factor
            out.update({"base/posterior_mean": mean, "base/posterior_logvar_clamped": logvar,
                        "base/gt_latent_scaled": scaled,
                        "base/decode_gt_latent_scaled": m.base.decode(scaled),
                        "base/decode_posterior_mean": m.base.decode(mean)})
    return out
