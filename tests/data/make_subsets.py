"""Cut the test subsets of AMBER and POPE in tests/data from full copies of the benchmarks.

    python tests/data/make_subsets.py --amber AMBER/data --pope POPE/output/coco

`--amber`: AMBER's `data/` folder (github junyangwang0410/AMBER); `--pope`: POPE's
`output/coco/` folder (github AoiDragon/POPE). Either may be left out. Rules (see the SOURCE.md
beside each subset):

- AMBER: every query on images AMBER_1.jpg .. AMBER_{N_AMBER_IMAGES}.jpg, from each of the five
  query files (entries in file order), and the annotations.json entries of exactly those query
  ids (in file order); relation.json and safe_words.txt whole. The JSON files are written as
  AMBER's are (`json.dumps(..., indent=4)`, no final newline), which reproduces the full files
  byte for byte: checked on the input before anything is written.
- POPE: the first N_POPE_LINES lines of each coco_pope_{random,popular,adversarial}.json, bytes
  as they are (popular and adversarial end their lines with CRLF).
"""

import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_AMBER_IMAGES = 20
N_POPE_LINES = 60  # the first 10 images: 6 questions each, 3 yes then 3 no interleaved
AMBER_QUERIES = (
    "query_generative.json",
    "query_discriminative.json",
    "query_discriminative-existence.json",
    "query_discriminative-attribute.json",
    "query_discriminative-relation.json",
)
POPE_FILES = ("coco_pope_random.json", "coco_pope_popular.json", "coco_pope_adversarial.json")


def _load_as_amber_writes(path: Path):
    raw = path.read_bytes()
    data = json.loads(raw)
    if _dump(data) != raw:
        raise SystemExit(f"{path}: not laid out as json.dumps(indent=4); subsets would differ")
    return data


def _dump(data) -> bytes:
    return json.dumps(data, indent=4).encode("utf-8")


def amber_subset(source: Path, out: Path, n_images: int = N_AMBER_IMAGES) -> None:
    images = {f"AMBER_{n}.jpg" for n in range(1, n_images + 1)}
    queries, ids = {}, set()
    for name in AMBER_QUERIES:
        kept = [q for q in _load_as_amber_writes(source / "query" / name) if q["image"] in images]
        queries[name] = kept
        ids |= {q["id"] for q in kept}
    annotations = [a for a in _load_as_amber_writes(source / "annotations.json") if a["id"] in ids]
    (out / "query").mkdir(parents=True, exist_ok=True)
    for name, kept in queries.items():
        (out / "query" / name).write_bytes(_dump(kept))
    (out / "annotations.json").write_bytes(_dump(annotations))
    for name in ("relation.json", "safe_words.txt"):
        shutil.copyfile(source / name, out / name)
    print(f"AMBER: {len(annotations)} annotations, queries {[len(q) for q in queries.values()]}")


def pope_subset(source: Path, out: Path, n_lines: int = N_POPE_LINES) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in POPE_FILES:
        lines = (source / name).read_bytes().splitlines(keepends=True)
        (out / name).write_bytes(b"".join(lines[:n_lines]))
    print(f"POPE: first {n_lines} lines of {len(POPE_FILES)} files")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amber", type=Path, help="AMBER's full data/ folder")
    parser.add_argument("--pope", type=Path, help="POPE's full output/coco/ folder")
    parser.add_argument("--out", type=Path, default=HERE, help="default: tests/data")
    args = parser.parse_args()
    if args.amber is None and args.pope is None:
        parser.error("give --amber and/or --pope")
    if args.amber is not None:
        amber_subset(args.amber, args.out / "amber")
    if args.pope is not None:
        pope_subset(args.pope, args.out / "pope" / "coco")


if __name__ == "__main__":
    main()
