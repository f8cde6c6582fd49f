#!/usr/bin/env python3
"""The Python package on the shared dataset: Python-call p50 against the same engine calls
timed in Rust in the same process, and side by side with chromadb (PersistentClient) and
lancedb (local), the embedded stores Python users pick today.

    python scripts/bench-python.py [--dataset DIR] [--n N] [--skip-others] [--json FILE]

The dataset is /work/shared/data/wordnet-minilm-dev (or $PERCOLATE_DATASET): 50k unit-norm
384-d MiniLM embeddings (base.fbin), 500 queries (query.fbin) and their exact 100 nearest
(gt.ibin). chromadb and lancedb are imported only when installed (pip install chromadb
lancedb); percolate_core must be installed (scripts/build-wheel.sh).

Rows, for every store, one Python thread:
- insert: all N embeddings with their texts and a `bucket` field, in batches of 1000 (s);
- get: p50 of reading one record by id (µs);
- insert_and_index (percolate): until the HNSW graph holds every embedding (percolate's
  writes return first and its graph is built in the background; the others index inline);
- knn: p50 of k=10 search (µs) and recall@10 against gt.ibin; percolate again with ef=100;
- filtered knn: p50 of k=10 search restricted to bucket == 3 (a tenth of the data), recall@10
  against the exact answer computed with numpy;
- batch: p50 of creating 1000 records from a 1000 x 384 float32 array (percolate only: the
  Rust comparison).
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

DEFAULT_DATASET = "/work/shared/data/wordnet-minilm-dev"
BUCKETS = 10
FILTER_BUCKET = 3
# The beam width of percolate's second kNN row (its default is narrower).
WIDE_EF = 100


def read_bin(path: Path, dtype: Any) -> np.ndarray:
    with open(path, "rb") as f:
        rows, cols = np.fromfile(f, dtype=np.int32, count=2)
        return np.fromfile(f, dtype=dtype, count=int(rows) * int(cols)).reshape(rows, cols)


def p50_us(samples_ns: Sequence[float]) -> float:
    return statistics.median(samples_ns) / 1000.0


def timed(call: Callable[[], Any], repeat: int) -> List[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return samples


def recall(found: Sequence[Sequence[int]], truth: np.ndarray, k: int = 10) -> float:
    hits = sum(len(set(f[:k]) & set(t[:k].tolist())) for f, t in zip(found, truth))
    return hits / (k * len(found))


def filtered_truth(base: np.ndarray, queries: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    subset = np.flatnonzero(buckets == FILTER_BUCKET)
    scores = queries @ base[subset].T
    return subset[np.argsort(-scores, axis=1)[:, :10]]


class Data:
    def __init__(self, directory: Path, n: Optional[int]) -> None:
        self.base = read_bin(directory / "base.fbin", np.float32)
        if n is not None:
            self.base = self.base[:n]
        self.queries = read_bin(directory / "query.fbin", np.float32)
        truth = read_bin(directory / "gt.ibin", np.int32)
        self.texts = [json.loads(line)["text"] for line in open(directory / "texts.jsonl")]
        self.texts = self.texts[: len(self.base)]
        self.buckets = np.arange(len(self.base)) % BUCKETS
        if n is None or n >= len(read_bin(directory / "base.fbin", np.float32)):
            self.truth = truth
        else:  # gt.ibin is for the whole base: recompute the exact answer for the prefix
            scores = self.queries @ self.base.T
            self.truth = np.argsort(-scores, axis=1)[:, :10]
        self.filtered = filtered_truth(self.base, self.queries, self.buckets)


def bench_percolate(data: Data, root: Path) -> Dict[str, Any]:
    from percolate_core import MemoryEngine
    from percolate_core import _native  # type: ignore[attr-defined]

    memory = MemoryEngine("rocksdb", str(root / "percolate"), "bench", dimension=384)
    n = len(data.base)
    start = time.perf_counter()
    ids: List[str] = []
    for offset in range(0, n, 1000):
        chunk = slice(offset, offset + 1000)
        created = memory.batch_create_resources(
            data.texts[chunk],
            embeddings=data.base[chunk],
            metadatas=[{"bucket": int(b)} for b in data.buckets[chunk]],
        )
        ids.extend(r.id for r in created)
    insert_s = time.perf_counter() - start
    # Searches never wait for the background indexer (pending embeddings are searched
    # exactly); the timings below should measure the graph, not overlap its building.
    _native._wait_for_index(memory)
    index_s = time.perf_counter() - start
    position = {rid: i for i, rid in enumerate(ids)}
    rng = np.random.default_rng(0)
    sample = [ids[i] for i in rng.integers(0, n, 2000)]

    # One untimed pass loads every sampled record into the block cache; then Python and Rust
    # rounds alternate, so neither reads what the other just warmed while it stayed cold.
    for rid in sample:
        memory.get_resource(rid)
    get_py: List[float] = []
    get_rust: List[float] = []
    for round_ in range(4):
        part = sample[round_ * 500 : (round_ + 1) * 500]
        get_rust += _native._rust_latencies(memory, "get", ids=part)
        for rid in part:
            t0 = time.perf_counter_ns()
            memory.get_resource(rid)
            get_py.append(time.perf_counter_ns() - t0)

    # A first pass over every query gives the recall and warms the caches both paths read.
    found: List[List[int]] = []
    for q in data.queries:
        found.append([position[h.resource.id] for h in memory.search_resources(q, k=10)])
    knn_py: List[float] = []
    knn_rust: List[float] = []
    for part in np.array_split(data.queries, 4):
        knn_rust += _native._rust_latencies(memory, "search", vectors=part, k=10)
        for q in part:
            t0 = time.perf_counter_ns()
            memory.search_resources(q, k=10)
            knn_py.append(time.perf_counter_ns() - t0)
    knn_recall = recall(found, data.truth)

    # The same searches with a wider beam: what recall costs.
    wide_found: List[List[int]] = []
    wide_py: List[float] = []
    for q in data.queries:
        t0 = time.perf_counter_ns()
        hits = memory.search_resources(q, k=10, ef=WIDE_EF)
        wide_py.append(time.perf_counter_ns() - t0)
        wide_found.append([position[h.resource.id] for h in hits])

    filtered_found: List[List[int]] = []
    filtered_py: List[float] = []
    for q in data.queries:
        t0 = time.perf_counter_ns()
        hits = memory.search_resources(q, k=10, filter={"bucket": FILTER_BUCKET})
        filtered_py.append(time.perf_counter_ns() - t0)
        filtered_found.append([position[h.resource.id] for h in hits])
    filtered_recall = recall(filtered_found, data.filtered)

    # Throughput of k=10 searches from 1 and from 4 Python threads: calls release the GIL, so
    # threads run searches in parallel up to the cores there are.
    throughput: Dict[int, float] = {}
    for threads in (1, 4):
        queries = np.array_split(data.queries, threads)
        workers = [
            threading.Thread(target=lambda qs=qs: [memory.search_resources(q, k=10) for q in qs])
            for qs in queries
        ]
        t0 = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        throughput[threads] = len(data.queries) / (time.perf_counter() - t0)

    batch_memory = memory.create_tenant("bench-batch", dimension=384)
    block = np.ascontiguousarray(data.base[:1000])
    contents = [f"batch row {i}" for i in range(1000)]
    batch_py: List[float] = []
    batch_rust: List[float] = []
    for _ in range(5):
        batch_rust += _native._rust_latencies(batch_memory, "batch", vectors=block, rounds=4)
        for _ in range(4):
            t0 = time.perf_counter_ns()
            batch_memory.batch_create_resources(contents, embeddings=block)
            batch_py.append(time.perf_counter_ns() - t0)
    memory.close()
    return {
        "insert_s": insert_s,
        "insert_and_index_s": index_s,
        "get_p50_us": p50_us(get_py),
        "get_rust_p50_us": p50_us(get_rust),
        "knn_p50_us": p50_us(knn_py),
        "knn_rust_p50_us": p50_us(knn_rust),
        "knn_recall": knn_recall,
        f"knn_ef{WIDE_EF}_p50_us": p50_us(wide_py),
        f"knn_ef{WIDE_EF}_recall": recall(wide_found, data.truth),
        "search_qps_1_thread": throughput[1],
        "search_qps_4_threads": throughput[4],
        "filtered_p50_us": p50_us(filtered_py),
        "filtered_recall": filtered_recall,
        "batch_p50_us": p50_us(batch_py),
        "batch_rust_p50_us": p50_us(batch_rust),
    }


def bench_chromadb(data: Data, root: Path) -> Dict[str, Any]:
    import chromadb

    client = chromadb.PersistentClient(path=str(root / "chroma"))
    collection = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
    n = len(data.base)
    ids = [str(i) for i in range(n)]
    start = time.perf_counter()
    for offset in range(0, n, 1000):
        chunk = slice(offset, offset + 1000)
        collection.add(
            ids=ids[chunk],
            embeddings=data.base[chunk],
            documents=data.texts[chunk],
            metadatas=[{"bucket": int(b)} for b in data.buckets[chunk]],
        )
    insert_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    sample = [ids[i] for i in rng.integers(0, n, 2000)]
    get = timed(lambda it=iter(sample): collection.get(ids=[next(it)], include=["documents", "metadatas", "embeddings"]), len(sample))
    found, knn = [], []
    for q in data.queries:
        t0 = time.perf_counter_ns()
        result = collection.query(query_embeddings=[q], n_results=10)
        knn.append(time.perf_counter_ns() - t0)
        found.append([int(i) for i in result["ids"][0]])
    filtered_found, filtered = [], []
    for q in data.queries:
        t0 = time.perf_counter_ns()
        result = collection.query(query_embeddings=[q], n_results=10, where={"bucket": FILTER_BUCKET})
        filtered.append(time.perf_counter_ns() - t0)
        filtered_found.append([int(i) for i in result["ids"][0]])
    return {
        "insert_s": insert_s,
        "get_p50_us": p50_us(get),
        "knn_p50_us": p50_us(knn),
        "knn_recall": recall(found, data.truth),
        "filtered_p50_us": p50_us(filtered),
        "filtered_recall": recall(filtered_found, data.filtered),
    }


def bench_lancedb(data: Data, root: Path) -> Dict[str, Any]:
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(str(root / "lance"))
    n = len(data.base)
    start = time.perf_counter()
    table = None
    for offset in range(0, n, 1000):
        chunk = slice(offset, offset + 1000)
        batch = pa.table(
            {
                "id": pa.array(np.arange(offset, min(offset + 1000, n)), pa.int64()),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(data.base[chunk].reshape(-1)), 384
                ),
                "text": pa.array(data.texts[chunk]),
                "bucket": pa.array(data.buckets[chunk], pa.int64()),
            }
        )
        if table is None:
            table = db.create_table("bench", batch)
        else:
            table.add(batch)
    assert table is not None
    # An ANN index, as a user who wants kNN at this size builds one: lancedb's default IVF-PQ
    # (searched with its default nprobes and no refine step), and a B-tree on the id.
    from lancedb.index import BTree, IvfPq

    table.create_index("vector", config=IvfPq(distance_type="cosine"))
    table.create_index("id", config=BTree())
    insert_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    sample = [int(i) for i in rng.integers(0, n, 2000)]
    get = timed(lambda it=iter(sample): table.search().where(f"id = {next(it)}").limit(1).to_list(), len(sample))
    found, knn = [], []
    for q in data.queries:
        t0 = time.perf_counter_ns()
        rows = table.search(q).metric("cosine").limit(10).to_list()
        knn.append(time.perf_counter_ns() - t0)
        found.append([int(r["id"]) for r in rows])
    filtered_found, filtered = [], []
    for q in data.queries:
        t0 = time.perf_counter_ns()
        rows = table.search(q).metric("cosine").where(f"bucket = {FILTER_BUCKET}", prefilter=True).limit(10).to_list()
        filtered.append(time.perf_counter_ns() - t0)
        filtered_found.append([int(r["id"]) for r in rows])
    return {
        "insert_s": insert_s,
        "get_p50_us": p50_us(get),
        "knn_p50_us": p50_us(knn),
        "knn_recall": recall(found, data.truth),
        "filtered_p50_us": p50_us(filtered),
        "filtered_recall": recall(filtered_found, data.filtered),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=os.environ.get("PERCOLATE_DATASET", DEFAULT_DATASET))
    parser.add_argument("--n", type=int, default=None, help="use the first N embeddings")
    parser.add_argument("--skip-others", action="store_true", help="percolate only")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    data = Data(Path(args.dataset), args.n)
    print(f"dataset {args.dataset}: {len(data.base)} x {data.base.shape[1]}, {len(data.queries)} queries", file=sys.stderr)
    benches: Dict[str, Callable[[Data, Path], Dict[str, Any]]] = {"percolate": bench_percolate}
    if not args.skip_others:
        benches["chromadb"] = bench_chromadb
        benches["lancedb"] = bench_lancedb
    results: Dict[str, Any] = {}
    for name, bench in benches.items():
        root = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        try:
            print(f"== {name}", file=sys.stderr)
            results[name] = bench(data, root)
        except ImportError as error:
            results[name] = {"error": f"not installed: {error}"}
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(json.dumps({name: results[name]}, indent=1), file=sys.stderr)
    rows = [
        "insert_s",
        "insert_and_index_s",
        "get_p50_us",
        "knn_p50_us",
        "knn_recall",
        f"knn_ef{WIDE_EF}_p50_us",
        f"knn_ef{WIDE_EF}_recall",
        "filtered_p50_us",
        "filtered_recall",
    ]
    print("| row | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for row in rows:
        cells = [f"{r[row]:.3f}" if isinstance(r.get(row), float) else str(r.get(row, "-")) for r in results.values()]
        print(f"| {row} | " + " | ".join(cells) + " |")
    p = results["percolate"]
    print()
    print(
        f"percolate search throughput: {p['search_qps_1_thread']:.0f}/s from 1 thread, "
        f"{p['search_qps_4_threads']:.0f}/s from 4 threads ({os.cpu_count()} cores)"
    )
    print()
    print("| percolate p50 | Python (µs) | Rust (µs) | Python - Rust | Python / Rust |")
    print("|---|---|---|---|---|")
    for label, key in [("get", "get"), ("search k=10", "knn"), ("batch of 1000", "batch")]:
        py, rust = p[f"{key}_p50_us"], p[f"{key}_rust_p50_us"]
        print(f"| {label} | {py:.1f} | {rust:.1f} | {py - rust:+.1f} | {py / rust:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
