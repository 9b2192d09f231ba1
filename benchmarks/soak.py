"""Soak test: tens of thousands of mixed requests at 64 clients, watching errors and memory.

Starts `python -m service` on the committed models and drives it with wrk: every input form
(multipart PNG, raw JPEG, JSON base64, JSON pixels, the Open Inference Protocol's JSON), the three
variants and `variant=all`, and about 5% bad inputs (not an image, a blank canvas, malformed
JSON), sent in turn. A warm-up run first; then runs until `--requests` answers. Prints the
answers by status class (bad inputs must get 4xx, nothing 5xx), the service's RSS at start, after
warm-up and at the end, and p99.

    python -m benchmarks.soak [--requests 50000] [--connections 64]

Exits 1 when a target is missed: no 5xx and no socket errors, exactly the bad inputs answered
4xx, RSS growth after warm-up <= 10%.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.harness import WRK_MIXED, run_wrk_mixed, write_requests, wrk_missing
from devtools.committed import committed_models
from devtools.payloads import multipart
from devtools.servers import free_port, rss_mb, start_service

TARGET_RSS_GROWTH = 0.10
BAD_EVERY = 20  # one request in 20 is a bad input


def digits(data_dir: str | None, count: int) -> list[np.ndarray]:
    if data_dir:
        from training.data import load_idx_directory

        return list(load_idx_directory(data_dir).test_images[:count])
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):  # synthetic bars when no MNIST copy is around
        image = np.zeros((28, 28), np.uint8)
        column = int(rng.integers(6, 20))
        image[4:24, column : column + 3] = 255
        images.append(image)
    return images


def encoded(image: np.ndarray, fmt: str, **options: object) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt, **options)
    return buffer.getvalue()


def good_requests(images: list[np.ndarray]) -> list[tuple[str, str, bytes]]:
    """Each input form with each variant choice, over different digits."""
    variants = ["group", "instance", "layer", "all"]
    requests = []
    for index, image in enumerate(images):
        variant = variants[index % len(variants)]
        path = f"/predict?variant={variant}"
        photo = np.uint8(255) - np.kron(image, np.ones((4, 4), np.uint8))  # 112 px, dark ink
        forms = [
            (path, *reversed(multipart([encoded(image, "PNG")]))),
            (path, "image/jpeg", encoded(photo, "JPEG", quality=90)),
            (path, "application/json", json.dumps({"images": [base64.b64encode(
                encoded(image, "PNG")).decode()]}).encode()),
            (path, "application/json", json.dumps({"pixels": [image.tolist()]}).encode()),
            (f"/v2/models/{variants[index % 3]}/infer", "application/json", json.dumps({
                "inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "FP32",
                            "data": (image / 255).ravel().round(4).tolist()}]}).encode()),
        ]  # fmt: skip
        requests.append(forms[index % len(forms)])
    return requests


def bad_requests() -> list[tuple[str, str, bytes]]:
    blank = encoded(np.zeros((280, 280), np.uint8), "PNG")
    return [
        ("/predict", "image/png", b"this is not an image"),  # 400
        ("/predict?variant=layer", "image/png", blank),  # 422: no digit
        ("/predict", "application/json", b'{"pixels": [[1, 2'),  # 400: malformed JSON
    ]


def mixed(images: list[np.ndarray]) -> tuple[list[tuple[str, str, bytes]], int]:
    """Good requests with one bad in every BAD_EVERY; how many of the list are bad."""
    good, bad = good_requests(images), bad_requests()
    requests, bad_count = [], 0
    for index, request in enumerate(good):
        requests.append(request)
        if (index + 1) % (BAD_EVERY - 1) == 0:
            requests.append(bad[bad_count % len(bad)])
            bad_count += 1
    return requests, bad_count


def soak(args: argparse.Namespace, listing: Path, script: Path, pid: int, port: int) -> dict:
    rss = {"start": rss_mb(pid)}
    warm_up = run_wrk_mixed(port, args.connections, 10, listing, script)
    rss["after warm-up"] = rss_mb(pid)
    print(f"warm-up: {warm_up['requests']} requests, {warm_up['rps']:.0f} req/s", flush=True)
    statuses: Counter = Counter()
    total, socket_errors, worst_p99, runs = 0, 0, 0.0, 0
    while total < args.requests:
        run = run_wrk_mixed(port, args.connections, 20, listing, script)
        statuses.update(run["statuses"])
        total += run["requests"]
        socket_errors += run["socket_errors"]
        worst_p99 = max(worst_p99, run["p99"])
        runs += 1
        print(f"  {total} requests, {run['rps']:.0f} req/s, p99 {run['p99']:.1f} ms, "
              f"RSS {rss_mb(pid):.0f} MB", flush=True)  # fmt: skip
    rss["end"] = rss_mb(pid)
    return {"statuses": statuses, "total": total, "socket_errors": socket_errors,
            "p99": worst_p99, "rss": rss}  # fmt: skip


def report(result: dict, bad_share: float) -> list[str]:
    classes = Counter()
    for status, count in result["statuses"].items():
        classes[f"{status // 100}xx"] += count
    by_status = ", ".join(f"{s}: {n}" for s, n in sorted(result["statuses"].items()))
    rss = result["rss"]
    growth = rss["end"] / rss["after warm-up"] - 1
    answered_4xx = classes["4xx"] / max(1, result["total"])
    print(f"\nrequests {result['total']} ({by_status}); socket errors {result['socket_errors']}")
    print(f"RSS MB: start {rss['start']:.0f}, after warm-up {rss['after warm-up']:.0f}, "
          f"end {rss['end']:.0f} (growth after warm-up {growth:+.1%})")  # fmt: skip
    print(f"p99 (worst run) {result['p99']:.1f} ms; 4xx share {answered_4xx:.2%} "
          f"(bad inputs sent: {bad_share:.2%})\n")  # fmt: skip
    checks = [
        ("no 5xx", classes["5xx"] == 0, f"{classes['5xx']}"),
        ("no socket errors", result["socket_errors"] == 0, f"{result['socket_errors']}"),
        ("bad inputs, and only they, get 4xx", abs(answered_4xx - bad_share) < 0.005,
         f"{answered_4xx:.2%} vs {bad_share:.2%}"),
        ("RSS growth after warm-up <= 10%", growth <= TARGET_RSS_GROWTH, f"{growth:+.1%}"),
        (f">= {result['wanted']} requests", result["total"] >= result["wanted"],
         str(result["total"])),
    ]  # fmt: skip
    print("| check | measured | met |\n| --- | --- | --- |")
    for name, met, value in checks:
        print(f"| {name} | {value} | {'yes' if met else 'MISS'} |")
    return [name for name, met, _ in checks if not met]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--models-dir", type=Path, default=committed_models())
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args()
    if wrk_missing():
        return 2
    requests, bad_count = mixed(digits(args.data_dir, 200))
    port = free_port()
    server = start_service(port, args.models_dir)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            listing = write_requests(Path(tmp), "soak", requests)
            script = Path(tmp) / "mixed.lua"
            script.write_text(WRK_MIXED)
            result = soak(args, listing, script, server.pid, port)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result["wanted"] = args.requests
    misses = report(result, bad_count / len(requests))
    print(f"\n{len(misses)} targets missed" if misses else "\nall targets met")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
