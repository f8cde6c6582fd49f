#!/usr/bin/env python3
"""The hnswlib reference for benches/vector.rs, on the same data and the same machine.

    python3 -m venv ~/.cache/percolate/benchvenv
    ~/.cache/percolate/benchvenv/bin/pip install numpy hnswlib
    ~/.cache/percolate/benchvenv/bin/python scripts/hnswlib_baseline.py [DATASET_DIR] [N]

Builds an hnswlib index (M=16; ef_construction 128 like percolate's default) over the first N
base vectors (default: all), then times single-thread k=10 queries one call at a time for
several ef values and prints recall@10 against the dataset's ground truth (or brute force
when N is smaller than the base) with p50/p99 latency, in the bench's format.
"""
import sys
import time

import hnswlib
import numpy as np


def read_fbin(path):
    with open(path, "rb") as f:
        n, d = np.frombuffer(f.read(8), dtype=np.uint32)
        return np.frombuffer(f.read(), dtype=np.float32).reshape(n, d)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/wordnet-minilm-dev"
    base = read_fbin(f"{root}/base.fbin")
    if len(sys.argv) > 2:
        base = base[: int(sys.argv[2])]
    queries = read_fbin(f"{root}/query.fbin")[:200]
    n, d = base.shape
    normalised = base / np.linalg.norm(base, axis=1, keepdims=True)
    q_norm = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(q_norm @ normalised.T), axis=1)[:, :10]

    for ef_construction in (128, 200):
        index = hnswlib.Index(space="cosine", dim=d)
        index.init_index(max_elements=n, M=16, ef_construction=ef_construction)
        index.set_num_threads(2)
        started = time.perf_counter()
        index.add_items(base, np.arange(n))
        build = time.perf_counter() - started
        print(f"hnswlib ef_construction={ef_construction}: built {n} x {d} in {build:.1f} s on 2 threads "
              f"({n / build:.0f} vectors/s)")
        index.set_num_threads(1)
        for ef in (16, 24, 32, 48, 64):
            index.set_ef(ef)
            times, hits = [], 0
            for i, q in enumerate(queries):
                t = time.perf_counter()
                labels, _ = index.knn_query(q, k=10)
                times.append(time.perf_counter() - t)
                hits += len(set(labels[0]) & set(truth[i]))
            times.sort()
            p50 = times[len(times) // 2] * 1e6
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1e6
            print(f"hnswlib     ef={ef:<4} recall@10 {hits / (10 * len(queries)):.3f}  p50 {p50:8.1f}µs  p99 {p99:8.1f}µs")


if __name__ == "__main__":
    main()
