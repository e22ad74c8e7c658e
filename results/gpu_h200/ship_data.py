"""Carry the real CIFAR-10 to the lent GPU machine, whose calls take at most 64 MiB each.

Each image is stored as lossless WebP (57 % of the raw bytes), split into parts that travel in
successive calls; `unpack` rebuilds the arrays there and checks them against the sha256 of the
original arrays before anything trains on them.

    python results/gpu_h200/ship_data.py pack CIFAR10_NPZ .gpudata   # here: .gpudata/pK/{partK.npz,manifest.json}
    python results/gpu_h200/ship_data.py unpack PARTS_DIR OUT_NPZ    # there, all parts in one folder: verified npz
"""
import hashlib
import io
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

# (array, start, stop) ranges per part: part1 (first call, beside the wheels) holds the test set and
# 12k training images, so a smoke run can train on it alone; the rest fill the later calls.
PARTS = [
    [("x_test", 0, 10000), ("x_train", 0, 12000)],
    [("x_train", 12000, 44000)],
    [("x_train", 44000, 50000)],
]


def encode(images: np.ndarray) -> list[bytes]:
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "WEBP", lossless=True, quality=100, method=2)
        out.append(buffer.getvalue())
    return out


def decode(blobs: list[bytes]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])


def pack(npz: str, out_dir: str) -> None:
    arrays = np.load(npz, allow_pickle=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"y_train": arrays["y_train"].tolist(), "y_test": arrays["y_test"].tolist(), "sha256": {}}
    for k, ranges in enumerate(PARTS, start=1):
        fields = {}
        for name, start, stop in ranges:
            images = arrays[name][start:stop]
            manifest["sha256"][f"{name}_{start}_{stop}"] = hashlib.sha256(images.tobytes()).hexdigest()
            with ProcessPoolExecutor() as pool:
                blobs = [b for chunk in pool.map(encode, np.array_split(images, 16)) for b in chunk]
            fields[f"{name}_{start}_{stop}"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
            fields[f"{name}_{start}_{stop}_lengths"] = np.array([len(b) for b in blobs], dtype=np.int64)
        (out / f"p{k}").mkdir(exist_ok=True)
        np.savez(out / f"p{k}" / f"part{k}.npz", **fields)
        print(f"p{k}/part{k}.npz: {(out / f'p{k}' / f'part{k}.npz').stat().st_size / 2**20:.1f} MiB")
    for k in range(1, len(PARTS) + 1):  # each call's folder carries the manifest, so any one can start
        (out / f"p{k}" / "manifest.json").write_text(json.dumps(manifest))


def unpack(parts_dir: str, out_npz: str) -> None:
    """Rebuild from the parts present (all of them: the whole set; part1 alone: a smoke subset),
    each image range checked against its sha256."""
    parts = Path(parts_dir)
    manifest = json.loads((parts / "manifest.json").read_text())
    pieces: dict[str, list[np.ndarray]] = {"x_train": [], "x_test": []}
    for k, ranges in enumerate(PARTS, start=1):
        if not (parts / f"part{k}.npz").exists():
            break
        fields = np.load(parts / f"part{k}.npz")
        for name, start, stop in ranges:
            key = f"{name}_{start}_{stop}"
            data, lengths = fields[key].tobytes(), fields[f"{key}_lengths"]
            ends = np.cumsum(lengths)
            blobs = [data[end - n:end] for end, n in zip(ends, lengths)]
            chunks = [blobs[j * len(blobs) // 16:(j + 1) * len(blobs) // 16] for j in range(16)]
            with ProcessPoolExecutor() as pool:
                images = np.concatenate(list(pool.map(decode, chunks)))
            if hashlib.sha256(images.tobytes()).hexdigest() != manifest["sha256"][key]:
                sys.exit(f"{key}: sha256 differs from the original's: the data did not arrive intact")
            pieces[name].append(images)
    arrays = {name: np.concatenate(p) for name, p in pieces.items()}
    arrays["y_train"] = np.array(manifest["y_train"][:len(arrays["x_train"])], dtype=np.int64)
    arrays["y_test"] = np.array(manifest["y_test"], dtype=np.int64)
    np.savez(out_npz, **arrays)
    print(f"{out_npz}: {len(arrays['x_train'])} train / {len(arrays['x_test'])} test images, sha256 checked")


if __name__ == "__main__":
    {"pack": pack, "unpack": unpack}[sys.argv[1]](*sys.argv[2:])
