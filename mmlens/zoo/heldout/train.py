"""Train `mmlens/heldout`: `mmlens/priors`' recipe with colour supervised on three objects only.

    OMP_NUM_THREADS=1 python -m mmlens.zoo.heldout.train --work /tmp/heldout-work --threads 1

Same model, schedule, seeds and checkpointing as `mmlens.zoo.priors.train` (every step's examples
come from a generator seeded by the step's number; each stage checkpoints every 100 steps to
`--work`, so a restart resumes). What changes is the supervision (`data.py`): stage 1 ignores the
colour label of held-out objects, and alignment's captions and questions never state or ask their
colour. The default alignment is 700 steps instead of 1,200, to fit about 90 minutes on 2 shared
CPU cores at one thread. Only the trained parts are written (`--out`).
"""

import argparse
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from mmlens.zoo.heldout.data import (
    SUPERVISED,
    heldout_example,
    mask_colour_targets,
    masked_caption_pieces,
)
from mmlens.zoo.priors import train as base
from mmlens.zoo.priors.build import SPEC, build_model, build_processor, save_trained
from mmlens.zoo.priors.language_model import load_language_model
from mmlens.zoo.priors.scenes import COLOURS, Scene
from mmlens.zoo.priors.text import Example
from mmlens.zoo.schedule import warmup_cosine


@dataclass(frozen=True)
class Settings(base.Settings):
    """`priors.train.Settings` with a shorter alignment (700 steps, not 1,200). With
    `masked_colours`, captions keep the held-out objects' colour sentences but their colour words
    are never a target (`data.masked_caption_pieces`); colour questions about them stay out."""

    steps: int = 700
    masked_colours: bool = False


def pretrain_vision(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    settings: Settings,
    work: Path,
    device: str,
) -> None:
    """Stage 1 of `priors.train`, with held-out objects' colour labels masked (-100)."""
    names, slots = base.NAMES, base.SLOTS
    n_out = len(slots) * (len(names) + 1 + len(COLOURS) + 1)
    probe = nn.Linear(SPEC.n_image_tokens * SPEC.d_vision, n_out).to(device)
    tower = model.model.vision_tower
    params = [*tower.parameters(), *probe.parameters()]
    optimizer = torch.optim.AdamW(params, lr=settings.vision_lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(settings.vision_steps))

    def step_fn(step: int) -> float:
        rng = random.Random(f"{settings.seed}-vision-{step}")
        scenes, images = base._scenes(rng, settings.vision_batch)
        pixels = base.pixel_values(processor, images)
        targets = mask_colour_targets(base.label_targets(scenes), scenes, slots).to(device)
        with torch.enable_grad():
            features = base.patch_features(model, pixels.to(device)).flatten(1)
            out = probe(features).view(len(scenes), len(slots), -1)
            objects, colours = out.split([len(names) + 1, len(COLOURS) + 1], dim=-1)
            loss = nn.functional.cross_entropy(
                objects.flatten(0, 1), targets[..., 0].flatten()
            ) + nn.functional.cross_entropy(colours.flatten(0, 1), targets[..., 1].flatten())
        return base._update(loss, optimizer, scheduler, params)

    modules = {"tower": tower, "probe": probe, "optimizer": optimizer, "scheduler": scheduler}
    base._run_stage(
        "vision", settings.vision_steps, settings.checkpoint_every, modules, work, step_fn
    )


def masked_batch(
    processor: LlavaProcessor, examples: list[Example], scenes: list[Scene], images: list
) -> dict[str, Tensor]:
    """`priors.train.example_batch`, except that captions are built from
    `data.masked_caption_pieces`: held-out colour words are input but labelled -100."""
    tokenizer = processor.tokenizer
    rows, labels = [], []
    for example, scene in zip(examples, scenes, strict=True):
        ids = base.prompt_ids(processor, example.prompt)
        if example.kind == "caption":
            pieces = masked_caption_pieces(scene)
        else:
            pieces = [(f" {example.answer}", True)]
        answer, target = [], []
        for text, supervised in pieces:
            tokens = tokenizer(text, add_special_tokens=False).input_ids
            answer += tokens
            target += tokens if supervised else [-100] * len(tokens)
        answer.append(tokenizer.eos_token_id)
        target.append(tokenizer.eos_token_id)
        rows.append(ids + answer)
        labels.append([-100] * len(ids) + target)
    width = max(len(row) for row in rows)
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        "labels": torch.tensor([r + [-100] * (width - len(r)) for r in labels]),
        "pixel_values": base.pixel_values(processor, images),
    }


def align(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    settings: Settings,
    work: Path,
    device: str,
) -> list[float]:
    """Stage 2 of `priors.train`, with `data.heldout_example` in place of `text.random_example`."""
    tower, projector = model.model.vision_tower, model.model.multi_modal_projector
    optimizer = torch.optim.AdamW(
        [
            {"params": tower.parameters(), "lr": settings.tower_lr},
            {"params": projector.parameters(), "lr": settings.lr},
        ],
        weight_decay=0.01,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(settings.steps))
    trainable = [*tower.parameters(), *projector.parameters()]

    def step_fn(step: int) -> float:
        rng = random.Random(f"{settings.seed}-align-{step}")
        scenes, images = base._scenes(rng, settings.batch_size)
        examples = [heldout_example(scene, rng) for scene in scenes]
        if settings.masked_colours:
            batch = masked_batch(processor, examples, scenes, images)
        else:
            batch = base.example_batch(processor, examples, images)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.enable_grad():
            loss = base.answer_loss(model, batch)
        return base._update(loss, optimizer, scheduler, trainable)

    modules = {
        "tower": tower,
        "projector": projector,
        "optimizer": optimizer,
        "scheduler": scheduler,
    }
    return base._run_stage(
        "align", settings.steps, settings.checkpoint_every, modules, work, step_fn
    )


def train(settings: Settings, work: Path, out: Path, device: str, threads: int) -> Path:
    """Both stages (resuming from `work`), then the trained parts to `out`."""
    torch.set_num_threads(threads)
    started = time.time()
    language_model, tokenizer = load_language_model()
    processor = build_processor(tokenizer)
    model = build_model(language_model, processor).to(device)
    del language_model
    model.model.language_model.requires_grad_(False)
    model.lm_head.requires_grad_(False)
    pretrain_vision(model, processor, settings, work, device)
    losses = align(model, processor, settings, work, device)
    tail = losses[-100:] or [float("nan")]
    metadata = {
        "settings": str(asdict(settings)),
        "colour_supervised_on": ",".join(SUPERVISED),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "threads": str(threads),
        "torch": torch.__version__,
        "final_loss_last_100_steps": f"{sum(tail) / len(tail):.4f}",
        "seconds_this_run": f"{time.time() - started:.0f}",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_trained(model.cpu(), out, metadata)
    print(f"wrote {out} ({metadata['seconds_this_run']} s this run)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    defaults = Settings()
    parser.add_argument("--work", type=Path, required=True, help="folder for checkpoints")
    parser.add_argument("--out", type=Path, default=None, help="default WORK/trained.safetensors")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    for field, value in asdict(defaults).items():
        flag = f"--{field.replace('_', '-')}"
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    args = parser.parse_args()
    settings = Settings(**{f: getattr(args, f) for f in asdict(defaults)})
    out = args.out or args.work / "trained.safetensors"
    train(settings, args.work, out, args.device, args.threads)


if __name__ == "__main__":
    main()
