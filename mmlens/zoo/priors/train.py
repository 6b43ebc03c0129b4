"""Train `mmlens/priors`: a vision tower and projector around the frozen SmolLM2-135M-Instruct.

    python -m mmlens.zoo.priors.train --work priors-training          # about 80 min on 2 CPU cores
    python -m mmlens.zoo.priors.train --work priors-training --device cuda

Two stages, both seeded (every step's examples come from a generator seeded by the step's number,
so an interrupted run resumes exactly from its last checkpoint in `--work`):

1. the vision tower learns the scene labels (object and colour in each slot) through a linear
   probe on the patch features LLaVA reads (layer -2, CLS dropped);
2. alignment: tower and projector learn captions and one-word answers through the frozen language
   model (loss on the answer tokens only; the language model's weights never change).

Only the trained parts are written (`--out`, default the package's `trained.safetensors`).
"""

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from mmlens.adapters.llava import image_chat
from mmlens.zoo.priors.assemble import TRAINED_FILE
from mmlens.zoo.priors.build import IMAGE_TOKEN, SPEC, build_model, build_processor, save_trained
from mmlens.zoo.priors.language_model import load_language_model
from mmlens.zoo.priors.scenes import COLOURS, DRAWERS, Scene, draw_scene, random_scene
from mmlens.zoo.priors.text import Example, random_example
from mmlens.zoo.schedule import warmup_cosine

NAMES = tuple(DRAWERS)
SLOTS = ("left", "middle", "right")


@dataclass(frozen=True)
class Settings:
    seed: int = 0
    vision_steps: int = 600
    vision_batch: int = 64
    vision_lr: float = 1e-3
    steps: int = 1200
    batch_size: int = 16
    lr: float = 1e-3
    tower_lr: float = 2e-4
    checkpoint_every: int = 100


def pixel_values(processor: LlavaProcessor, images: list[Image.Image]) -> Tensor:
    """What the processor makes of our 64x64 scenes (no resize or crop applies: scale to [0, 1],
    normalise), computed directly so that training does not depend on the processor's backend."""
    ours = processor.image_processor
    mean = torch.tensor(ours.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(ours.image_std).view(1, 3, 1, 1)
    pixels = torch.from_numpy(np.stack([np.asarray(image, dtype=np.float32) for image in images]))
    return (pixels.permute(0, 3, 1, 2) / 255.0 - mean) / std


def prompt_ids(processor: LlavaProcessor, prompt: str) -> list[int]:
    """Token ids of the templated prompt with the image token expanded, as the processor does."""
    text = image_chat(prompt).replace(IMAGE_TOKEN, IMAGE_TOKEN * SPEC.n_image_tokens)
    return list(processor.tokenizer(text).input_ids)


def example_batch(
    processor: LlavaProcessor, examples: list[Example], images: list[Image.Image]
) -> dict[str, Tensor]:
    """Right-padded inputs; labels cover the answer and the end token (everything else -100)."""
    tokenizer = processor.tokenizer
    rows, labels = [], []
    for example in examples:
        ids = prompt_ids(processor, example.prompt)
        answer = tokenizer(f" {example.answer}", add_special_tokens=False).input_ids
        answer = [*answer, tokenizer.eos_token_id]
        rows.append(ids + answer)
        labels.append([-100] * len(ids) + answer)
    return padded_batch(processor, rows, labels, images)


def padded_batch(
    processor: LlavaProcessor, rows: list[list[int]], labels: list[list[int]], images: list
) -> dict[str, Tensor]:
    """Token rows and their labels right-padded to one width, with the images' pixels."""
    width = max(len(row) for row in rows)
    pad = processor.tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        "labels": torch.tensor([r + [-100] * (width - len(r)) for r in labels]),
        "pixel_values": pixel_values(processor, images),
    }


def _scenes(rng: random.Random, size: int) -> tuple[list[Scene], list[Image.Image]]:
    scenes = [random_scene(rng, NAMES) for _ in range(size)]
    return scenes, [draw_scene(scene, rng) for scene in scenes]


def random_batch(
    processor: LlavaProcessor, scenes: list[Scene], images: list[Image.Image], rng: random.Random
) -> dict[str, Tensor]:
    """One alignment batch: a caption or a question per scene (`text.random_example`)."""
    return example_batch(processor, [random_example(scene, rng) for scene in scenes], images)


#: Alignment batch from a step's scenes, images and generator (`random_batch` by default).
BatchFn = Callable[[LlavaProcessor, list[Scene], list[Image.Image], random.Random], dict]


def label_targets(scenes: list[Scene]) -> Tensor:
    """[batch, slot, 2]: object and colour index per slot (len(NAMES), len(COLOURS) if empty)."""
    colours = list(COLOURS)
    targets = torch.tensor([[len(NAMES), len(colours)]] * len(SLOTS)).repeat(len(scenes), 1, 1)
    for row, scene in enumerate(scenes):
        for item in scene.objects:
            slot = SLOTS.index(item.position)
            targets[row, slot] = torch.tensor([NAMES.index(item.name), colours.index(item.colour)])
    return targets


def patch_features(model: LlavaForConditionalGeneration, pixel_values: Tensor) -> Tensor:
    """The features LLaVA's projector reads: tower layer -2, CLS dropped."""
    out = model.model.vision_tower(pixel_values, output_hidden_states=True)
    return out.hidden_states[model.config.vision_feature_layer][:, 1:]


def answer_loss(model: LlavaForConditionalGeneration, batch: dict[str, Tensor]) -> Tensor:
    """Cross-entropy on the answer tokens, unembedding only those positions (the frozen
    vocabulary is 49k wide; the rest of the sequence needs no logits)."""
    labels = batch.pop("labels")
    hidden = model.model(**batch).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = model.lm_head(hidden[:, :-1][keep])
    return nn.functional.cross_entropy(logits.float(), targets[keep])


def _update(loss: Tensor, optimizer: Any, scheduler: Any, params: list[Tensor]) -> float:
    """One optimiser step on `loss` (gradients clipped to norm 1); returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    scheduler.step()
    return loss.item()


class Checkpoints:
    """The latest state of one stage in `work/STAGE.pt` (weights-only torch files, written
    atomically), so an interrupted run resumes where it stopped."""

    def __init__(self, work: Path, stage: str) -> None:
        self.path = work / f"{stage}.pt"

    def load(self, modules: dict[str, Any]) -> int:
        if not self.path.exists():
            return 0
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        for name, module in modules.items():
            module.load_state_dict(state[name])
        return int(state["step"])

    def save(self, modules: dict[str, Any], step: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {name: module.state_dict() for name, module in modules.items()}
        partial = self.path.with_suffix(".tmp")
        torch.save({**state, "step": step}, partial)
        partial.replace(self.path)


def _run_stage(
    name: str,
    steps: int,
    every: int,
    modules: dict[str, Any],
    work: Path,
    step_fn: Any,
) -> list[float]:
    checkpoints = Checkpoints(work, name)
    start_step = checkpoints.load(modules)
    if start_step:
        print(f"{name}: resuming at step {start_step}", flush=True)
    losses, start, running = [], time.time(), 0.0
    for step in range(start_step, steps):
        loss = step_fn(step)
        losses.append(loss)
        running = 0.95 * running + 0.05 * loss if step > start_step else loss
        if (step + 1) % every == 0 or step == steps - 1:
            checkpoints.save(modules, step + 1)
        if step % 25 == 0 or step == steps - 1:
            print(f"{name} {step:5d}  loss {running:.4f}  {time.time() - start:6.0f}s", flush=True)
    return losses


def pretrain_vision(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    settings: Settings,
    work: Path,
    device: str,
    slot_labels: Callable[[list[Scene]], Tensor] = label_targets,
) -> None:
    """Stage 1: a linear probe on the patch features predicts each slot's object and colour
    (`slot_labels` gives them; -100 marks a label the loss ignores)."""
    n_patch = SPEC.n_image_tokens
    n_out = len(SLOTS) * (len(NAMES) + 1 + len(COLOURS) + 1)
    probe = nn.Linear(n_patch * SPEC.d_vision, n_out).to(device)
    tower = model.model.vision_tower
    params = [*tower.parameters(), *probe.parameters()]
    optimizer = torch.optim.AdamW(params, lr=settings.vision_lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(settings.vision_steps))

    def step_fn(step: int) -> float:
        rng = random.Random(f"{settings.seed}-vision-{step}")
        scenes, images = _scenes(rng, settings.vision_batch)
        pixels = pixel_values(processor, images)
        targets = slot_labels(scenes).to(device)
        with torch.enable_grad():
            features = patch_features(model, pixels.to(device)).flatten(1)
            out = probe(features).view(len(scenes), len(SLOTS), -1)
            objects, colours = out.split([len(NAMES) + 1, len(COLOURS) + 1], dim=-1)
            loss = nn.functional.cross_entropy(
                objects.flatten(0, 1), targets[..., 0].flatten()
            ) + nn.functional.cross_entropy(colours.flatten(0, 1), targets[..., 1].flatten())
        return _update(loss, optimizer, scheduler, params)

    modules = {"tower": tower, "probe": probe, "optimizer": optimizer, "scheduler": scheduler}
    _run_stage("vision", settings.vision_steps, settings.checkpoint_every, modules, work, step_fn)


def align(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    settings: Settings,
    work: Path,
    device: str,
    make_batch: BatchFn = random_batch,
) -> list[float]:
    """Stage 2: captions and one-word answers (`make_batch`) through the frozen language model."""
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
        scenes, images = _scenes(rng, settings.batch_size)
        batch = {k: v.to(device) for k, v in make_batch(processor, scenes, images, rng).items()}
        with torch.enable_grad():
            loss = answer_loss(model, batch)
        return _update(loss, optimizer, scheduler, trainable)

    modules = {
        "tower": tower,
        "projector": projector,
        "optimizer": optimizer,
        "scheduler": scheduler,
    }
    return _run_stage("align", settings.steps, settings.checkpoint_every, modules, work, step_fn)


def train(
    settings: Settings,
    work: Path,
    out: Path,
    device: str,
    threads: int,
    slot_labels: Callable[[list[Scene]], Tensor] = label_targets,
    make_batch: BatchFn = random_batch,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Both stages (resuming from `work`), then the trained parts to `out`. `slot_labels` and
    `make_batch` say what the stages supervise; `metadata` is added to the file's."""
    torch.set_num_threads(threads)
    started = time.time()
    language_model, tokenizer = load_language_model()
    processor = build_processor(tokenizer)
    model = build_model(language_model, processor).to(device)
    del language_model
    model.model.language_model.requires_grad_(False)
    model.lm_head.requires_grad_(False)
    pretrain_vision(model, processor, settings, work, device, slot_labels)
    losses = align(model, processor, settings, work, device, make_batch)
    tail = losses[-100:] or [float("nan")]
    metadata = {
        **(metadata or {}),
        "settings": str(asdict(settings)),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "final_loss_last_100_steps": f"{sum(tail) / len(tail):.4f}",
        "seconds": f"{time.time() - started:.0f}",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_trained(model.cpu(), out, metadata)
    print(f"wrote {out} ({metadata['seconds']} s)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    defaults = Settings()
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("priors-training"),
        help="folder for resumable checkpoints",
    )
    parser.add_argument("--out", type=Path, default=TRAINED_FILE)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    for field, value in asdict(defaults).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    settings = Settings(**{f: getattr(args, f) for f in asdict(defaults)})
    train(settings, args.work, args.out, args.device, args.threads)


if __name__ == "__main__":
    main()
