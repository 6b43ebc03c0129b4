"""Train the shipped `mmlens/shapes` model from scratch (seeded; about 28 minutes on 2 CPU cores).

    python -m mmlens.zoo.shapes.train --out mmlens/zoo/shapes/model

The model is the LLaVA architecture at small scale (`SHAPES_SPEC`): a CLIP-style tower reading
64x64 scenes as 64 patches, the 2-layer GELU projector, and an 8-block LLaMA. Half the examples
are captions, half one-word questions; the loss covers the answer tokens only.
"""

import argparse
import random
import time
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from transformers import LlavaProcessor

from mmlens.adapters.llava import image_chat
from mmlens.zoo.schedule import warmup_cosine
from mmlens.zoo.shapes.scenes import draw_scene, random_scene
from mmlens.zoo.shapes.text import Example, random_example, vocabulary
from mmlens.zoo.tiny import TinyLlavaSpec, build_llava, build_tokenizer

SHAPES_SPEC = TinyLlavaSpec(
    n_blocks=8,
    d_model=128,
    n_heads=4,
    n_kv_heads=2,
    d_mlp=384,
    d_vision=128,
    vision_blocks=4,
    vision_heads=4,
    image_size=64,
    patch_size=8,
    init_std=0.02,
    seed=0,
)


def make_batch(
    processor: LlavaProcessor, examples: list[Example], images: list[Image.Image]
) -> dict[str, Tensor]:
    """Inputs with labels on the answer and `</s>` only (prompt and padding are -100)."""
    texts = [f"{image_chat(e.prompt)} {e.answer} </s>" for e in examples]
    batch = processor(images=images, text=texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].clone()
    assistant = processor.tokenizer.convert_tokens_to_ids("assistant")
    for row, ids in enumerate(batch["input_ids"].tolist()):
        answer_start = len(ids) - 1 - ids[::-1].index(assistant) + 2  # after "assistant :"
        labels[row, :answer_start] = -100
    labels[batch["attention_mask"] == 0] = -100
    batch["labels"] = labels
    return dict(batch)


def sample_batch(rng: random.Random, processor: LlavaProcessor, size: int) -> dict[str, Tensor]:
    scenes = [random_scene(rng) for _ in range(size)]
    images = [draw_scene(scene, rng) for scene in scenes]
    examples = [random_example(scene, rng) for scene in scenes]
    return make_batch(processor, examples, images)


def train(out: Path, steps: int, batch_size: int, lr: float, seed: int, threads: int) -> Path:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, processor = build_llava(SHAPES_SPEC, build_tokenizer(vocabulary(), lowercase=True))
    processor.tokenizer.padding_side = "right"
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps))
    start, running = time.time(), 0.0
    for step in range(steps):
        with torch.enable_grad():  # callers (e.g. the tests) may have switched it off
            loss = model(**sample_batch(rng, processor, batch_size)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {running:.4f}  {time.time() - start:6.0f}s", flush=True)
    model.eval()
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "model")
    parser.add_argument("--steps", type=int, default=4500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    train(args.out, args.steps, args.batch_size, args.lr, args.seed, args.threads)


if __name__ == "__main__":
    main()
