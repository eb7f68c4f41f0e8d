"""EGL attention benchmark: fused op vs eager reference vs torch.compile(reference).

Prints a markdown table and writes JSON. Each (case, backend, pass) runs in a fresh subprocess so
that its peak memory is its own: on CPU the rise of the process's peak RSS over the set-up, on CUDA
torch.cuda.max_memory_allocated. A subprocess gets an address-space limit (--max-gb), so a case
too large for the machine is reported as "OOM" instead of taking the machine down.

    python benches/bench_egl.py                       # all cases, CPU, float32 (or: diffmd bench egl)
    python benches/bench_egl.py --cases paper-train --device cuda --json out.json
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass

CASES = {
    # name: (molecules, atoms per molecule, graph, radius Å); paper-train is the paper's training batch
    "paper-train": (200, 21, "complete", None),
    "N2000-complete": (1, 2000, "complete", None),
    "N20000-radius": (1, 20000, "radius", 4.15),  # ~30 neighbours at 0.1 atoms/Å^3 (liquid water)
    "N200000-radius": (1, 200000, "radius", 4.15),
}
BACKENDS = ("fused", "reference", "compiled-reference")
PASSES = ("fwd", "fwd+bwd")


@dataclass
class Row:
    case: str
    backend: str
    pass_: str
    device: str
    atoms: int
    edges: int
    ms: float | None
    peak_mb: float | None
    note: str = ""


def _inputs(case: str, device: str):
    import torch

    import diffmd_fast as dm

    mols, n, kind, radius = CASES[case]
    g = torch.Generator().manual_seed(0)
    N = mols * n
    batch = torch.repeat_interleave(torch.arange(mols), n)
    if kind == "complete":
        x = torch.randn(N, 3, generator=g) * 1.2  # molecule-sized clouds, a share of pairs inside 1.6 Å
        graph = dm.graph.complete_graph(batch)
    else:
        side = (N / 0.1) ** (1 / 3)  # Å, density 0.1 atoms/Å^3
        x = torch.rand(N, 3, generator=g) * side
        graph = dm.graph.radius_graph(x, batch, radius)
    H, D, K = 8, 16, dm.sbf_dim(2, 2)
    t = dict(x=x, v=torch.randn(N, 3, generator=g) * 0.01, q=torch.randn(N, H, D, generator=g),
             k=torch.randn(N, H, D, generator=g), m=torch.randn(N, H, D, generator=g),
             w1=torch.randn(K, H, D, generator=g) * 0.3, w2=torch.randn(K, H, D, generator=g) * 0.3)
    t = {k_: v_.to(device) for k_, v_ in t.items()}
    return t, graph.row_ptr.to(device), graph.col.to(device)


def _worker(case, backend, pass_, device, repeats, max_gb, out_q):
    if device == "cpu" and max_gb:
        lim = int(max_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    import torch

    import diffmd_fast as dm

    try:
        t, row_ptr, col = _inputs(case, device)
        fn = {"fused": dm.ops.egl_attention, "reference": dm.reference.egl_attention,
              "compiled-reference": torch.compile(dm.reference.egl_attention, dynamic=False)}[backend]
        ins = [v.requires_grad_(pass_ == "fwd+bwd") for v in t.values()]

        def run():
            out = fn(*ins, row_ptr, col, cutoff=1.6, num_radial=2, num_spherical=2)
            if pass_ == "fwd+bwd":
                (out[0].sum() + out[1].sum()).backward()
            for a in ins:
                a.grad = None

        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        run()  # warm-up (and compilation)
        sync()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            run()
            sync()
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            run()
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
        out_q.put((statistics.median(times), peak, col.numel(), ""))
    except (RuntimeError, MemoryError) as err:
        oom = "memory" in str(err).lower() or isinstance(err, MemoryError)
        out_q.put((None, None, 0, "OOM" if oom else f"error: {str(err).splitlines()[0][:80]}"))


def measure(case, backend, pass_, device, repeats, max_gb) -> Row:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_worker, args=(case, backend, pass_, device, repeats, max_gb, q))
    p.start()
    p.join()
    mols, n, _, _ = CASES[case]
    if p.exitcode != 0 or q.empty():
        return Row(case, backend, pass_, device, mols * n, 0, None, None, f"crashed (exit {p.exitcode}; OOM?)")
    ms, peak, edges, note = q.get()
    return Row(case, backend, pass_, device, mols * n, edges, ms, peak, note)


def table(rows: list[Row]) -> str:
    lines = ["| case | backend | pass | atoms | edges | time (ms) | peak mem (MB) | speed-up vs eager | mem vs eager |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    eager = {(r.case, r.pass_): r for r in rows if r.backend == "reference"}
    for r in rows:
        e = eager.get((r.case, r.pass_))
        speed = f"{e.ms / r.ms:.1f}x" if e and e.ms and r.ms else "–"
        mem = f"{r.peak_mb / e.peak_mb:.3f}" if e and e.peak_mb and r.peak_mb is not None else "–"
        ms = f"{r.ms:.1f}" if r.ms is not None else r.note
        peak = f"{r.peak_mb:.0f}" if r.peak_mb is not None else "–"
        lines.append(f"| {r.case} | {r.backend} | {r.pass_} | {r.atoms} | {r.edges} | {ms} | {peak} | {speed} | {mem} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="paper-train,N2000-complete,N20000-radius",
                    help=f"comma-separated, from {list(CASES)}")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-gb", type=float, default=18.0, help="address-space limit per CPU subprocess (GiB)")
    ap.add_argument("--json", default="benches/results/bench_egl_{device}.json")
    args = ap.parse_args(argv)
    rows = []
    for case in args.cases.split(","):
        for backend in args.backends.split(","):
            for pass_ in PASSES:
                row = measure(case, backend, pass_, args.device, args.repeats, args.max_gb)
                print(f"  {case:15s} {backend:19s} {pass_:8s} {row.ms if row.ms is not None else row.note}", flush=True)
                rows.append(row)
    import torch

    machine = dict(platform=platform.platform(), processor=platform.processor(), cpus=mp.cpu_count(),
                   torch=torch.__version__, device=args.device,
                   gpu=torch.cuda.get_device_name() if args.device == "cuda" else None,
                   threads=torch.get_num_threads())
    print(f"\nEGL attention, float32, H=8, D=16, basis 2x2, cutoff 1.6 Å — {machine}\n")
    print(table(rows))
    path = args.json.format(device=args.device)
    from ..data.writers import json_text, write_text

    write_text(path, json_text(dict(machine=machine, rows=[asdict(r) for r in rows])))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
