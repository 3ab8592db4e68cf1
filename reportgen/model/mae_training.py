"""The MAE pretraining loop (`reportgen pretrain`): progress, TensorBoard, checkpoints,
exact resume, DDP. `pretrain_mae` holds the network, its masking and its config; this
module trains it and keeps its checkpoints in the one format (`reportgen.checkpoint`).

Everything random is derived from (seed, step, rank): the data order of each epoch,
every mask, every dropout draw. A resumed run therefore continues exactly where the
interrupted one was, and a fixed seed repeats a run. Under `torchrun` the same command
trains with DistributedDataParallel (gloo on CPU, NCCL on GPU); each rank draws its own
share of each global batch and only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from pretrain_mae.config import MAEConfig, preset
from pretrain_mae.data import collate
from pretrain_mae.masking import MaskingOptions, draw_mask
from pretrain_mae.model import MaskedAutoencoder3D
from pretrain_mae.viz import reconstruction_png
from reportgen.checkpoint import (
    load_weights,
    read_config,
    read_state,
    strict_config,
    unwrap,
    write_checkpoint,
)
from reportgen.model.engine import Optimiser, adamw, warmup_cosine

# The studies, built for a config's grid (called once the config is known, on rank 0 first).
DatasetFactory = Callable[[MAEConfig], Dataset]
# Lesion probability (B, X, Y, Z) for studies without a mask, from images and present flags.
LesionPrior = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainArgs:
    out: Path
    source: str = ""  # where the studies came from, recorded in training_args.json
    config: str = "base"
    masking: MaskingOptions = field(default_factory=MaskingOptions)
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    seed: int = 0
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    precision: str = (
        "auto"  # auto (bf16 on GPU, fp32 on CPU: bench/mae_throughput.py) | bf16 | fp32
    )
    compile: bool = False
    resume: bool = False
    stop_at: int | None = (
        None  # end this session after this step (with a checkpoint); --resume continues
    )
    model_overrides: dict = field(default_factory=dict)
    log_every: int = 10
    device: str = "auto"
    progress: bool = True

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(
            {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()},
            indent=2,
            default=str,
        )


# -- the MAE's checkpoints ---------------------------------------------------------------

MAE_TYPE = "reportgen-mae3d"


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    cfg,
    state: dict | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """An MAE checkpoint (`cfg` is its MAEConfig)."""
    return write_checkpoint(
        folder, unwrap(model).state_dict(), cfg.to_dict(), MAE_TYPE, state, extra_files
    )


def load_pretrained(folder: Path, device: str | torch.device = "cpu"):
    """An MAE from a checkpoint folder (weights loaded with safetensors, strict keys)."""
    cfg = mae_config(folder)
    model = MaskedAutoencoder3D(cfg)
    return load_weights(model, folder, device).to(device)


def mae_config(folder: Path) -> MAEConfig:
    """The config of an MAE checkpoint folder."""
    return strict_config(MAEConfig, read_config(folder, MAE_TYPE, "pretraining"), "MAE")


def _ranks() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def batch_indices(step: int, n: int, batch: int, world: int, rank: int, seed: int) -> list[int]:
    """This rank's share of global batch `step`, from a per-epoch permutation of n studies."""
    start = step * batch * world
    out = []
    for p in range(start + rank, start + batch * world, world):
        epoch, offset = divmod(p, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        out.append(int(perm[offset]))
    return out


def _step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((seed * 7_919 + step * 104_729 + rank * 1_299_709) % (2**63 - 1))
    return g


def resolve_config(args: TrainArgs) -> MAEConfig:
    """The run's model config: the interrupted run's when resuming, else the preset."""
    last = args.out / "last"
    if args.resume and last.exists():
        return mae_config(last)
    return preset(args.config, **args.model_overrides)


def train(
    args: TrainArgs,
    studies: DatasetFactory,
    lesion_prior: LesionPrior | None = None,
    log=print,
) -> Path:
    """Pretrain on `studies(cfg)`; `lesion_prior` fills in lesions where a study has no mask."""
    rank, world = _ranks()
    device = torch.device(
        "cuda"
        if (args.device == "auto" and torch.cuda.is_available())
        else ("cpu" if args.device == "auto" else args.device)
    )
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    is_main = rank == 0
    last = args.out / "last"
    cfg = resolve_config(args)
    dataset = studies(cfg) if is_main else None
    if world > 1:
        dist.barrier()
        if not is_main:  # rank 0 prepared (cached) them; the others now only read
            dataset = studies(cfg)
    torch.manual_seed(args.seed)
    model = MaskedAutoencoder3D(cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embed" in n]
    fused = device.type in ("cpu", "cuda")
    optimizer = adamw(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        args.lr,
        args.weight_decay,
        betas=(0.9, 0.95),
        fused=fused,
    )
    warmup = max(1, int(args.warmup_fraction * args.steps))
    scheduler = warmup_cosine(optimizer, args.steps, warmup)
    opt = Optimiser(optimizer, scheduler, clip=1.0, clip_params=list(model.parameters()))
    start = 0
    if args.resume and last.exists():
        model.load_state_dict(unwrap(load_pretrained(last)).state_dict())
        state = read_state(last)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        if is_main:
            log(f"resuming from step {start}")
    train_model: torch.nn.Module = model
    if args.compile:
        train_model = torch.compile(model)
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    writer = None
    if is_main:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "training_args.json").write_text(args.to_json())
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(args.out / "tb"), purge_step=start)
    autocast = torch.autocast(
        device.type,
        dtype=torch.bfloat16,
        enabled=args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda"),
    )
    bar = None
    if is_main and args.progress:
        from tqdm import tqdm

        bar = tqdm(
            total=args.steps, initial=start, desc="pretrain", unit="step", dynamic_ncols=True
        )
    seen, t0, loss_value = 0, time.perf_counter(), float("nan")
    end = min(args.steps, args.stop_at) if args.stop_at else args.steps
    for step in range(start, end):
        idx = batch_indices(step, len(dataset), args.batch_size, world, rank, args.seed)
        batch = collate([dataset[i] for i in idx])
        images, present = batch["image"].to(device), batch["present"].to(device)
        lesion = batch["lesion"].to(device)
        if lesion_prior is not None and not bool(batch["has_mask"].all()):
            with torch.no_grad():
                prior = lesion_prior(images, present)
            lesion = torch.where(batch["has_mask"].to(device)[:, None, None, None], lesion, prior)
        g = _step_generator(args.seed, step, rank, device)
        mask = draw_mask(cfg, present, args.masking, g, lesion=lesion, reference=images[:, 0])
        torch.manual_seed(args.seed * 31 + step * world + rank)  # drop-path draws
        with autocast:
            loss, _ = train_model(images, mask.keep, mask.target, mask.keep_valid)
        opt.step(loss)
        seen += len(idx) * world
        loss_value = float(loss.detach())
        if world > 1:
            reduced = torch.tensor([loss_value], device=device)
            dist.all_reduce(reduced)
            loss_value = float(reduced) / world
        if is_main:
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", studies_s=f"{rate:.1f}")
            if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
                writer.add_scalar("loss/train", loss_value, step + 1)
                writer.add_scalar("lr", scheduler.get_last_lr()[0], step + 1)
                writer.add_scalar("throughput/studies_per_s", rate, step + 1)
        if (step + 1) % args.checkpoint_every == 0 or step + 1 in (args.steps, end):
            if is_main:
                _checkpoint(
                    args, cfg, model, optimizer, scheduler, step + 1, dataset, mask, images, present
                )
            if world > 1:
                dist.barrier()
    if bar is not None:
        bar.close()
    replicas_agree = _replicas_agree(model, world, device)
    if end < args.steps:
        if is_main:
            writer.close()
            log(f"stopped at step {end} of {args.steps}; continue with --resume")
        return args.out
    if is_main:
        writer.close()
        # the encoder for the report model: OUT/config.json + model.safetensors, each file
        # replaced atomically beside the run's logs
        save_checkpoint(args.out, model, cfg)
        (args.out / "pretrain_summary.json").write_text(
            json.dumps(
                {
                    "steps": args.steps,
                    "final_loss": loss_value,
                    "studies": len(dataset),
                    "world_size": world,
                    "replicas_agree": replicas_agree,
                    "config": cfg.to_dict(),
                    "masking": asdict(args.masking),
                },
                indent=2,
            )
        )
    if world > 1:
        dist.barrier()
    return args.out


@torch.no_grad()
def _replicas_agree(model: torch.nn.Module, world: int, device: torch.device) -> bool:
    """Under DDP every rank must end with the same weights; compare a checksum of all of them."""
    if world == 1:
        return True
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    checksum = torch.stack(
        [
            flat.sum(),
            (
                flat
                * torch.arange(1, flat.numel() + 1, device=flat.device, dtype=torch.float64)
                % 9973
            ).sum(),
        ]
    ).to(device)
    gathered = [torch.zeros_like(checksum) for _ in range(world)]
    dist.all_gather(gathered, checksum)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def _checkpoint(
    args: TrainArgs,
    cfg: MAEConfig,
    model,
    optimizer,
    scheduler,
    step: int,
    dataset,
    mask,
    images,
    present,
) -> None:
    png = reconstruction_png(
        unwrap(model),
        cfg,
        images[0].float().cpu(),
        mask.keep[0].cpu(),
        mask.keep_valid[0].cpu(),
        mask.available[0].cpu(),
    )
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step}
    folder = save_checkpoint(
        args.out / f"checkpoint-{step:07d}", model, cfg, state, {"reconstruction.png": png}
    )
    last = args.out / "last"
    tmp = args.out / ".last.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)
    shutil.rmtree(last, ignore_errors=True)
    tmp.rename(last)
    checkpoints = sorted(args.out.glob("checkpoint-*"))
    for old in checkpoints[: -args.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
