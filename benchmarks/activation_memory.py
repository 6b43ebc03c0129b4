"""Memory of collecting and reading an activation store: flat in the number of items.

    python benchmarks/activation_memory.py [--items 40 400] [--out activation_memory.json]

For each item count, a fresh process collects the shipped model's every residual hook (9) at
every image token (64 per item) over that many items of the built-in benchmark (flush every 16
items, batch 8), then reads the whole store back one vector at a time through
`ActivationStore.dataset`. Reported per count: the store's size on disk, the process's peak
resident memory after loading the model, after collecting and after reading, and the resident
memory split into anonymous (held by the process) and file-backed (mapped store pages, which the
kernel drops under pressure). If collection held what it wrote, memory would grow by the store's
size between the counts.
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _resident_mib() -> dict[str, float]:
    """Resident memory now, split as Linux reports it: anonymous (what the process holds) and
    file-backed (pages of mapped files, here the memory-mapped store: page cache the kernel
    reclaims under pressure)."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:")):
            name, value = line.split(":")
            found[name] = int(value.split()[0]) / 1024
    return found


def child(n_items: int, folder: str) -> dict:
    import torch

    torch.set_num_threads(1)
    import mmlens
    from mmlens.benchmarks import read_shapes, write_shapes_benchmark
    from mmlens.runs.activation_store import ActivationStore, collect_activations
    from mmlens.runs.activations import ActivationSettings

    model = mmlens.load("mmlens/shapes")
    bench = write_shapes_benchmark(Path(folder) / "bench", n_scenes=max(2, n_items // 8 + 1))
    items = read_shapes(bench).items[:n_items]
    loaded = _peak_mib()
    hooks = ["blocks.0.hook_resid_pre"] + [f"blocks.{b}.hook_resid_post" for b in range(8)]
    settings = ActivationSettings(hooks, ("image",), batch_size=8, flush_every=16)
    collect_activations(model, items, Path(folder) / "acts", settings, progress=False)
    collected = _peak_mib()
    after_collect = _resident_mib()
    store = ActivationStore(Path(folder) / "acts")
    total = 0.0
    for hook in hooks:
        for vector, _ in store.dataset(hook, "image"):
            total += float(vector[0])
    size = sum(p.stat().st_size for p in (Path(folder) / "acts").rglob("*.safetensors"))
    return {
        "items": len(items),
        "store_mib": size / 2**20,
        "peak_after_load_mib": loaded,
        "peak_after_collect_mib": collected,
        "peak_after_read_mib": _peak_mib(),
        "anon_after_collect_mib": after_collect.get("RssAnon"),
        "anon_after_read_mib": _resident_mib().get("RssAnon"),
        "file_after_read_mib": _resident_mib().get("RssFile"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[40, 400])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.folder)))
        return
    rows = []
    for n in args.items:
        with tempfile.TemporaryDirectory() as folder:
            command = [sys.executable, __file__, "--child", str(n), "--folder", folder]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"mmlens/shapes, one thread, {platform.machine()}")
    print(
        "| items | store (MiB) | peak: after load | after collecting | after reading | "
        "anonymous: after collecting | after reading | file-backed after reading |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['items']} | {row['store_mib']:.1f} | {row['peak_after_load_mib']:.0f} | "
            f"{row['peak_after_collect_mib']:.0f} | {row['peak_after_read_mib']:.0f} | "
            f"{row['anon_after_collect_mib']:.0f} | {row['anon_after_read_mib']:.0f} | "
            f"{row['file_after_read_mib']:.0f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
