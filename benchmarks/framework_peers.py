"""The service against the serving frameworks a user would pick, in one run, and against what the
hardware allows.

Starts the service (`python -m service`, its default workers, committed models) and every
configuration of LitServe, BentoML, MLServer and KServe that `benchmarks.peers` knows, on the fp32
group model, then drives each with wrk at 1, 8 and 64 connections on its workload, in interleaved
rounds (best kept; a round's 1-client runs come first, so BentoML's lone client meets a fresh
batcher): PNG uploads (multipart, part `file`) for the service's `/predict`, LitServe and BentoML;
Open Inference Protocol tensors, FP32 [1, 28, 28] as JSON (and binary, where the framework takes
it), for the service's `/v2` route, MLServer and KServe. The service runs twice per row: at its
default precision (the fastest that passed its gate) and at fp32, the peers' own model. The peers
only decode, grey, resize and scale an upload, less work than the service's framing of real
photos. Then the inference-only ceiling: images/s of each precision's model in a tight loop at
batch 8, one single-threaded process per core. Prints every row, idle RSS per server, and the
ratio tables; exits 1 when a target is missed.

    python -m benchmarks.peers --install ../peervenvs        # once: a venv per framework
    python -m benchmarks.framework_peers --venvs ../peervenvs [--duration 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import wrk_missing
from benchmarks.http_load import WRK_SCRIPT, Load, run_wrk, start_server, v2_binary_body
from benchmarks.inference_ceiling import ceiling, tree_rss_mb
from benchmarks.peers import PNG, Peer, missing_venvs, start_all
from devtools import REPO_ROOT
from devtools.committed import committed_models
from devtools.payloads import multipart, sample_png
from devtools.servers import free_port
from mnist_shared.manifest import Manifest, latest_version

CONNECTIONS = (1, 8, 64)
TARGET_VS_BEST, TARGET_CEILING_SHARE, TARGET_INT8_SPEEDUP = 2.0, 0.5, 2.0
ROW = "{:<44}{:<16}{:>8}{:>9.0f}{:>8.1f}{:>8.1f}{:>8}"
HEADER = (
    f"{'server':<44}{'load':<16}{'clients':>8}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'errors':>8}"
)


def json_tensor_body(png: bytes, precision: str | None) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    from mnist_shared.preprocessing import scale_pixels

    pixels = scale_pixels(np.asarray(Image.open(io.BytesIO(png))))
    request: dict = {"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "FP32",
                                 "data": pixels.ravel().tolist()}]}  # fmt: skip
    if precision:
        request["parameters"] = {"precision": precision}
    return json.dumps(request).encode()


def service_loads(tmp: Path, png: bytes, precision: str) -> dict[str, Load]:
    """The service's three loads at `precision` ("": its default)."""
    body, content_type = multipart([png])
    (tmp / "upload.bin").write_bytes(body)
    query = f"&precision={precision}" if precision else ""
    (tmp / f"json{precision}.json").write_bytes(json_tensor_body(png, precision or None))
    binary, header_length = v2_binary_body(png, 1)
    if precision:  # the binary request's JSON header carries the parameter too
        header = json.loads(binary[:header_length]) | {"parameters": {"precision": precision}}
        encoded = json.dumps(header).encode()
        binary, header_length = encoded + binary[header_length:], len(encoded)
    (tmp / f"binary{precision}.bin").write_bytes(binary)
    infer = "/v2/models/group/infer"
    return {
        PNG: Load(f"/predict?variant=group{query}", tmp / "upload.bin", content_type),
        "OIP JSON": Load(infer, tmp / f"json{precision}.json", "application/json"),
        "OIP binary": Load(
            infer, tmp / f"binary{precision}.bin", "application/octet-stream", str(header_length)
        ),
    }


def peer_loads(peer: Peer, service: dict[str, Load]) -> dict[str, Load]:
    """The same bodies as the service's fp32 ones, on the peer's paths."""
    if peer.workload == PNG:
        return {PNG: Load("/predict", service[PNG].body, service[PNG].content_type)}
    loads = {"OIP JSON": service["OIP JSON"]}
    if peer.binary:
        loads["OIP binary"] = service["OIP binary"]
    return loads


def measure(contenders: list[tuple[str, int, dict[str, Load], Peer | None]], script: Path,
            args: argparse.Namespace) -> dict:  # fmt: skip
    """{(server, load, clients): best row} over `args.rounds` interleaved rounds."""
    results: dict = {}
    for round_ in range(args.rounds):
        for clients in CONNECTIONS:
            for name, port, loads, peer in contenders:
                if peer:
                    peer.resume()
                try:
                    for load_name, load in loads.items():
                        row = run_wrk(port, clients, args.duration, script, load)
                        key = (name, load_name, clients)
                        if key not in results or row["rps"] > results[key]["rps"]:
                            results[key] = row
                        print(ROW.format(name, load_name, clients, row["rps"], row["p50"],
                                         row["p99"], row["errors"]), flush=True)  # fmt: skip
                finally:
                    if peer:
                        peer.pause()
        print(f"-- round {round_ + 1} of {args.rounds} done", flush=True)
    return results


def report(
    results: dict, frameworks: dict[str, list[str]], ceilings: dict[str, float]
) -> list[str]:
    """Per workload and client count: the service, each framework's best, the ratio to the best
    of them; then the ceiling shares. Returns the misses."""
    misses = []
    for load in (PNG, "OIP JSON", "OIP binary"):
        names = [
            f for f, configs in frameworks.items() if any((c, load, 1) in results for c in configs)
        ]
        print(f"\n### {load}: req/s (p50 ms)\n")
        print("| clients | service | service fp32 | " + " | ".join(names) + " | service / best |")
        print("|---" * (len(names) + 4) + "|")
        for clients in CONNECTIONS:
            ours = results[("service", load, clients)]
            fp32 = results[("service fp32", load, clients)]
            best = {f: max((results[c, load, clients] for c in frameworks[f] if (c, load, clients) in results),
                           key=lambda r: r["rps"]) for f in names}  # fmt: skip
            top = max(best.values(), key=lambda r: r["rps"])
            ratio = ours["rps"] / top["rps"]
            cells = " | ".join(f"{best[f]['rps']:.0f} ({best[f]['p50']:.1f})" for f in names)
            print(f"| {clients} | {ours['rps']:.0f} ({ours['p50']:.1f}) | {fp32['rps']:.0f} "
                  f"({fp32['p50']:.1f}) | {cells} | {ratio:.2f}x |")  # fmt: skip
            if clients > 1 and ratio < TARGET_VS_BEST:
                misses.append(f"{load} at {clients} clients: {ratio:.2f}x the best framework")
            if clients == 1 and ours["p50"] > min(r["p50"] for r in best.values()):
                misses.append(f"{load} at 1 client: p50 above a framework's")
    print(
        "\n| precision | inference-only ceiling, images/s | service /predict 64 clients | /v2 binary 64 |"
    )
    print("|---|---|---|---|")
    for precision, images_per_s in ceilings.items():
        name = "service fp32" if precision == "fp32" else "service"
        shares = [results[(name, load, 64)]["rps"] / images_per_s for load in (PNG, "OIP binary")]
        print(f"| {precision} | {images_per_s:.0f} | {shares[0]:.0%} | {shares[1]:.0%} |")
        if precision == "fp32" and shares[0] < TARGET_CEILING_SHARE:
            misses.append(f"/predict at 64 clients: {shares[0]:.0%} of the fp32 ceiling")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venvs", type=Path, default=REPO_ROOT.parent / "peervenvs")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds, best kept")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args()
    if wrk_missing():
        return 2
    if missing := missing_venvs(args.venvs):
        print(f"error: no venv for {', '.join(missing)} under {args.venvs}: "
              f"python -m benchmarks.peers --install {args.venvs}", file=sys.stderr)  # fmt: skip
        return 2
    version_dir = committed_models() / "group" / str(latest_version(committed_models() / "group"))
    files = Manifest.read(version_dir).precision_files()
    ceilings = {p: ceiling(version_dir / f) for p, f in files.items()}
    print("inference-only ceiling (images/s, batch 8, a process per core):", ceilings, flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        (tmp / "post.lua").write_text(WRK_SCRIPT)
        png = sample_png(args.data_dir)
        default, fp32 = service_loads(tmp, png, ""), service_loads(tmp, png, "fp32")
        service_port = free_port()
        service = start_server(service_port, free_port(), committed_models())
        peers = start_all(args.venvs, version_dir / files["fp32"])
        try:
            print("\nidle RSS (MB, every process of the server):")
            print(f"  service: {tree_rss_mb(service.pid):.0f}")
            for peer in peers:
                print(f"  {peer.name}: {tree_rss_mb(peer.process.pid):.0f}")
            contenders = [("service", service_port, default, None),
                          ("service fp32", service_port, fp32, None)]  # fmt: skip
            contenders += [(p.name, p.port, peer_loads(p, fp32), p) for p in peers]
            print(HEADER)
            results = measure(contenders, tmp / "post.lua", args)
        finally:
            for peer in peers:
                peer.stop()
            service.terminate()
            service.wait(timeout=30)
    frameworks: dict[str, list[str]] = {}
    for peer in peers:
        frameworks.setdefault(peer.framework, []).append(peer.name)
    misses = report(results, frameworks, ceilings)
    errors = sum(row["errors"] for row in results.values())
    print(
        "\n" + ("targets met" if not misses else "missed: " + "; ".join(misses)),
        f"({errors} errors)",
    )
    return 0 if not misses and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
