"""Benchmark: MAE training throughput and peak memory, ours vs MONAI's MaskedAutoEncoderViT.

Both models get the same input (a batch of 7-sequence studies on the base grid), the same
width/depth/heads/MLP ratio, the same patch and mask ratio, and do full training steps
(forward, masked-patch MSE, backward, AdamW). Each variant runs in its own process so the
peak RSS is its own.

Note on tokens: MONAI stacks the sequences as channels (one token per patch); ours makes
one token per (sequence, patch) so any subset of sequences can be fed. At equal patch
size ours therefore carries 7x the tokens. The JSON reports both numbers.

python bench/mae_throughput.py [--steps 20] [--batch 4] [--out bench/results/mae_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from pretrain_mae.config import preset
from pretrain_mae.masking import MaskingOptions, draw_mask
from pretrain_mae.model import MaskedAutoencoder3D

VARIANTS = {
    "monai_fp32": ("monai", "fp32", False),
    "monai_bf16": ("monai", "bf16", False),
    "ours_fp32": ("ours", "fp32", False),
    "ours_bf16": ("ours", "bf16", False),
    "ours_bf16_compiled": ("ours", "bf16", True),
}


def _monai_model(cfg):
    from monai.networks.nets import MaskedAutoEncoderViT

    return MaskedAutoEncoderViT(
        in_channels=len(cfg.sequences),
        img_size=cfg.grid_shape,
        patch_size=cfg.patch,
        hidden_size=cfg.embed_dim,
        mlp_dim=int(cfg.embed_dim * cfg.mlp_ratio),
        num_layers=cfg.depth,
        num_heads=cfg.num_heads,
        masking_ratio=cfg.mask_ratio,
        decoder_hidden_size=cfg.decoder_dim,
        decoder_mlp_dim=int(cfg.decoder_dim * cfg.mlp_ratio),
        decoder_num_layers=cfg.decoder_depth,
        decoder_num_heads=cfg.decoder_heads,
        qkv_bias=True,
        decoder_pos_embed_type="learnable",  # 3D sin-cos needs a width divisible by 6
    )


def _monai_loss(model, images, cfg):
    pred, mask = model(images)  # pred (B, N, C*P), mask (B, N) 1 = masked
    b, c = images.shape[:2]
    px, py, pz = cfg.patch
    gx, gy, gz = cfg.patches_per_axis
    goal = images.reshape(b, c, gx, px, gy, py, gz, pz).permute(0, 2, 4, 6, 1, 3, 5, 7)
    goal = goal.reshape(b, gx * gy * gz, -1)
    mean, var = goal.mean(-1, keepdim=True), goal.var(-1, keepdim=True)
    goal = (goal - mean) / (var + 1e-6).sqrt()
    per_patch = ((pred.float() - goal) ** 2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


def run_variant(name: str, steps: int, batch: int, warmup: int) -> dict:
    kind, precision, compiled = VARIANTS[name]
    torch.manual_seed(0)
    cfg = preset("base")
    images = torch.randn(batch, len(cfg.sequences), *cfg.grid_shape)
    present = torch.ones(batch, len(cfg.sequences), dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    model = _monai_model(cfg) if kind == "monai" else MaskedAutoencoder3D(cfg)
    step_model = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> float:
        with autocast:
            if kind == "monai":
                loss = _monai_loss(step_model, images, cfg)
            else:
                m = draw_mask(cfg, present, MaskingOptions(), gen)
                loss, _ = step_model(images, m.keep, m.target, m.keep_valid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    tokens = cfg.num_patches if kind == "monai" else cfg.num_tokens
    return {
        "variant": name,
        "model": kind,
        "precision": precision,
        "compiled": compiled,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokens_per_study": tokens,
        "visible_tokens_per_study": int(tokens * (1 - cfg.mask_ratio)),
        "studies_per_s": round(steps * batch / seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # child mode
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "mae_throughput.json"
    )
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.steps, args.batch, args.warmup)))
        return
    rows: list[dict] = []
    failed: list[dict] = []
    for name in args.variants.split(","):
        cmd = [sys.executable, __file__, "--variant", name, "--steps", str(args.steps)]
        cmd += ["--batch", str(args.batch), "--warmup", str(args.warmup)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:  # e.g. MONAI's MAE does not run under bf16 autocast
            error = proc.stderr.strip().splitlines()[-1]
            print(f"{name}: failed: {error}")
            failed.append({"variant": name, "error": error})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(rows[-1])
    by = {r["variant"]: r for r in rows}
    cfg = preset("base")
    result = {
        "benchmark": "mae_throughput",
        "config": {**cfg.to_dict(), "batch": args.batch, "steps": args.steps},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        },
        "torch": torch.__version__,
        "variants": rows,
        "failed": failed,
    }
    if "monai_fp32" in by:
        base = by["monai_fp32"]
        result["speedup_vs_monai_fp32"] = {
            r["variant"]: round(r["studies_per_s"] / base["studies_per_s"], 2) for r in rows
        }
        result["memory_vs_monai_fp32"] = {
            r["variant"]: round(r["peak_rss_mb"] / base["peak_rss_mb"], 2) for r in rows
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in result if k.endswith("monai_fp32")}, indent=2))


if __name__ == "__main__":
    main()
