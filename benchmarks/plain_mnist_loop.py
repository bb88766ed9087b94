"""The baseline of benchmarks/startup.py's whole-process timing: the MNIST FC net of `specs/mnist_fc_bp.json`
(5 x 256 tanh, 10 outputs) trained the way a researcher writes it by hand: read the IDX files, standardise,
nn.Sequential, Adam with the spec's settings, shuffled batches of 128, `loss.backward(); opt.step()`, the test
error after every epoch. What bpcompile does beyond this (checkpoints, metrics, the alignment probe) it must
pay for out of the same wall time.

    python benchmarks/plain_mnist_loop.py --data-dir ../shared/data --epochs 3"""

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(root: Path, split: str):
    images = read_idx(root / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(root / f"{split}-labels-idx1-ubyte.gz")
    return torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, 784), torch.from_numpy(labels.astype(np.int64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)   # specs/mnist_fc_bp.json
    parser.add_argument("--eps", type=float, default=1e-3)
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(0)
    root = Path(args.data_dir) / "mnist"
    train_x, train_y = load(root, "train")
    test_x, test_y = load(root, "t10k")
    mean, std = train_x.mean(), train_x.std()
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    layers, width = [], 784
    for _ in range(5):
        layers += [nn.Linear(width, 256), nn.Tanh()]
        width = 256
    model = nn.Sequential(*layers, nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, eps=args.eps)
    for epoch in range(args.epochs):
        order = torch.randperm(len(train_y))
        for start in range(0, len(order), 128):
            index = order[start:start + 128]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(train_x[index]), train_y[index])
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            errors = sum(int((model(test_x[i:i + 1000]).argmax(1) != test_y[i:i + 1000]).sum())
                         for i in range(0, len(test_y), 1000))
        print(f"epoch {epoch + 1}: test error {100.0 * errors / len(test_y):.2f}%")
    print(f"{time.perf_counter() - started:.2f} s after importing torch")


if __name__ == "__main__":
    main()
