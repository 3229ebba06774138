"""``tn-peft bench planner``: our plans against opt_einsum's greedy / optimal paths and torch.einsum.

For every catalog graph, layer shape (``--shapes``, default 4096x4096 and 384x1536) and token count
(``--rows``, default 1, 64, 4096) the training step of the adapter's contraction ``y = x dW^T``
(node tensors need gradients, x does not) runs forward + backward four ways, interleaved in one
process so machine noise hits all alike:

- ``ours``: the planner's program (``make_plan``, cost model of this device);
- ``greedy`` / ``optimal``: opt_einsum's FLOP-only paths (``optimal`` = its exact ``dp``; the
  factorial ``optimal`` finds the same FLOP minimum on these networks), run by
  ``opt_einsum.contract_expression`` with the torch backend;
- ``einsum``: one ``torch.einsum`` call, which re-plans on every call.

Reported per case: predicted forward FLOPs, measured forward+backward time (median), peak memory
(allocations during forward + backward, from the profiler on CPU), and the planning time (ours cold:
search + emission + compile from empty caches; ours cached: the per-call dispatch lookup; opt_einsum:
``contract_path``). Extra rows: the issue's TT case (6 cores, modes 4, rank 8, T = 1024), cold planning
of 21-tensor networks, and LoRA at T = 1 against a hand-written ``F.linear`` chain. Results go to
``bench-results/planner.json``; ``--markdown`` prints the tables in Markdown.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import opt_einsum
import torch

from ...io.atomic import write_json
from ...planner import CostModel, Problem, make_plan, measure
from ...planner.problem import TOKENS
from ...planner.runtime.dispatch import PlanFamily, clear_caches
from ...planner.search import exact_path
from ...graph.spec import catalog, load_graph

METHODS = ("ours", "greedy", "optimal", "einsum")




# ------------------------------------------------------------------ one case
def _problem(graph: str, out_features: int, in_features: int, tokens: int) -> tuple[Problem, Any, list]:
    net = load_graph(graph)
    adapter = net.build(in_features, out_features)
    problem = adapter.problem.with_tokens(tokens)
    tensors = [t.detach().clone().normal_().requires_grad_(True) for t in adapter.node_tensors()]
    init = [t.detach().clone().normal_() for t in tensors] if net.delta else []
    return problem, net, tensors + init


def _einsum_pieces(problem: Problem):
    eq = problem.equation()
    sizes = problem.size_dict
    x_shape = (sizes[TOKENS],) + tuple(sizes[leg] for leg in problem.in_legs)
    shapes = [x_shape] + [tuple(sizes[leg] for leg in op.legs) for op in problem.operands[1:]]
    return eq, shapes


def _baseline(problem: Problem, strategy: str, delta: bool):
    """(callable (x, *tensors) -> y, forward FLOPs, planning seconds) for an opt_einsum strategy."""
    eq, shapes = _einsum_pieces(problem)
    n = len(problem.operands) - 1
    scale, x_shape, out = problem.scale, shapes[0], problem.out_features
    start = time.perf_counter()
    if strategy == "einsum":
        def run(x, *tensors):
            y = torch.einsum(eq, x.reshape(x_shape), *tensors[:n])
            if delta:
                y = y - torch.einsum(eq, x.reshape(x_shape), *tensors[n:])
            return (y * scale).reshape(-1, out)
        _, info = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize="auto")
        return run, float(info.opt_cost) * (2 if delta else 1), 0.0
    optimize = "dp" if strategy == "optimal" else strategy
    expr = opt_einsum.contract_expression(eq, *shapes, optimize=optimize)
    planning = time.perf_counter() - start
    _, info = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize=optimize)

    def run(x, *tensors):
        y = expr(x.reshape(x_shape), *tensors[:n], backend="torch")
        if delta:
            y = y - expr(x.reshape(x_shape), *tensors[n:], backend="torch")
        return (y * scale).reshape(-1, out)
    return run, float(info.opt_cost) * (2 if delta else 1), planning


def run_case(graph: str, out_features: int, in_features: int, tokens: int, args) -> dict[str, Any]:
    problem, net, tensors = _problem(graph, out_features, in_features, tokens)
    model = CostModel.for_device("cpu")
    colds = []
    for _ in range(3):  # cold: search, emission and compile from empty caches (best of 3: GC, load)
        clear_caches()
        start = time.perf_counter()
        plan = make_plan(problem, model, initial=net.delta)
        plan.program  # noqa: B018 - compiled on first use
        colds.append(time.perf_counter() - start)
    cold = min(colds)
    family = PlanFamily(problem, model, initial=net.delta, max_tokens=max(tokens, 1))
    family.program_for(tokens)
    lookups = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(1000):
            family.program_for(tokens)
        lookups.append((time.perf_counter() - t0) / 1000)
    fns: dict[str, Any] = {"ours": plan.program}
    flops = {"ours": plan.flops()}
    planning = {"ours_cold": cold, "ours_cached": min(lookups)}
    for method in METHODS[1:]:
        fn, f, p = _baseline(problem, method, net.delta)
        fns[method], flops[method] = fn, f
        planning[method] = p
    x = torch.randn(tokens, in_features)
    args_list = [[x, *tensors] for _ in METHODS]
    times = measure.time_forward_backward([fns[m] for m in METHODS], args_list, repeat=args.repeats,
                                          budget_s=args.budget)
    row: dict[str, Any] = {"graph": graph, "out": out_features, "in": in_features, "tokens": tokens,
                           "operands": len(problem.operands), "decisions": plan.decisions,
                           "flops": flops, "time_s": dict(zip(METHODS, times)), "planning_s": planning,
                           "predicted": {"time_s": plan.predicted_time(), "saved_bytes": plan.saved_bytes(),
                                         "peak_bytes": plan.peak_bytes()}}
    if not args.no_peak:
        row["peak_bytes"] = {m: measure.peak_bytes(fns[m], [x, *tensors]) for m in METHODS}
    row["ratio_vs_optimal"] = row["time_s"]["ours"] / row["time_s"]["optimal"]
    return row


# ------------------------------------------------------------------ extras
def tt_memory_case(args) -> dict[str, Any]:
    """The issue's case: TT (6 cores, modes 4, rank 8) at T = 1024 on 4096 x 4096."""
    net = load_graph("tt", cores=6, rank=8)
    adapter = net.build(4096, 4096)
    problem = adapter.problem.with_tokens(1024)
    tensors = [t.detach().clone().normal_().requires_grad_(True) for t in adapter.node_tensors()]
    model = CostModel.for_device("cpu")
    plans = {"ours": make_plan(problem, model), "flop_optimal": make_plan(problem, model, optimize="optimal"),
             "lean": make_plan(problem, model.with_(memory_weight=1e-8))}  # 10 s per GiB kept
    x = torch.randn(1024, 4096)
    names = list(plans)
    times = measure.time_forward_backward([plans[n].program for n in names], [[x, *tensors] for _ in names],
                                          repeat=args.repeats, budget_s=args.budget * 2)
    out = {}
    for name, t in zip(names, times):
        saved = measure.saved_bytes(plans[name].program, [x, *tensors], exclude=tensors)
        out[name] = {"time_s": t, "saved_bytes": saved, "predicted_saved_bytes": plans[name].saved_bytes(),
                     "flops": plans[name].flops(), "decisions": plans[name].decisions}
    return out


def planning_21(args) -> dict[str, Any]:
    """Cold planning (search + emission + compile) of 21-tensor networks; the exact search alone, and
    opt_einsum's exact ``dp`` (FLOPs only) on the same network for scale."""
    out = {}
    cases = {"tt21_dW (chain of 21 cores)": Problem.from_network(load_graph("tt", cores=21, rank=8), 2**21, 2**21),
             "tt20_x (20 cores + x, T=64)": Problem.from_network(load_graph("tt", cores=20, rank=8), 2**20, 2**20,
                                                                 tokens=64)}
    shapes = {name: [tuple(problem.size_dict[leg] for leg in op.legs) for op in problem.operands]
              for name, problem in cases.items()}
    for name, problem in cases.items():
        cold, search, dp = [], [], []
        for _ in range(3):
            clear_caches()
            t0 = time.perf_counter()
            make_plan(problem).program  # noqa: B018
            t1 = time.perf_counter()
            exact_path(problem, CostModel.for_device("cpu"))
            t2 = time.perf_counter()
            opt_einsum.contract_path(problem.equation(), *shapes[name], optimize="dp", shapes=True)
            t3 = time.perf_counter()
            cold.append(t1 - t0)
            search.append(t2 - t1)
            dp.append(t3 - t2)
        out[name] = {"operands": len(problem.operands), "cold_s": min(cold), "search_s": min(search),
                     "opt_einsum_dp_s": min(dp)}
    return out


def lora_t1(args) -> dict[str, Any]:
    """LoRA at T = 1: the generated program against a hand-written F.linear chain (forward, and fwd+bwd)."""
    F = torch.nn.functional
    out = {}
    for shape in ((4096, 4096), (1536, 384)):
        problem = Problem.from_network(load_graph("lora"), shape[1], shape[0], tokens=1)
        plan = make_plan(problem)
        b = torch.randn(shape[0], 4, requires_grad=True)
        a = torch.randn(4, shape[1], requires_grad=True)
        x = torch.randn(1, shape[1])
        scale = problem.scale

        def hand(x, b, a, scale=scale):
            return F.linear(F.linear(x, a), b) * scale

        program = plan.program
        res = {}
        for mode in ("forward", "forward_backward"):
            samples: dict[str, list[float]] = {"generated": [], "hand": []}
            pair = [("generated", program), ("hand", hand)]
            for round_ in range(21):
                for name, fn in (pair if round_ % 2 == 0 else pair[::-1]):  # alternate who goes first
                    t0 = time.perf_counter()
                    for _ in range(200):
                        y = fn(x, b, a)
                        if mode == "forward_backward":
                            y.sum().backward()
                    samples[name].append((time.perf_counter() - t0) / 200)
            gen, ref = min(samples["generated"]), min(samples["hand"])
            res[mode] = {"generated_s": gen, "hand_s": ref, "ratio": gen / ref}
        out[f"{shape[0]}x{shape[1]}"] = res
    return out


def adapter_dispatch(args) -> dict[str, Any]:
    """What an ``Adapter`` call adds on top of the program it runs (LoRA 1536x384, T = 1, training,
    forward only): ``apply`` (family and token lookups, the reshape of 3-D inputs) and ``forward``
    (also evaluating the node tensors)."""
    adapter = load_graph("lora").build(384, 1536)
    tensors = adapter.node_tensors()
    out = {}
    for name, x in (("2-D x", torch.randn(1, 384)), ("3-D x", torch.randn(1, 1, 384))):
        adapter(x)  # plan the family
        program, _ = next(iter(adapter._families.values())).select(1)
        flat = x.reshape(-1, 384)
        calls = {"forward": lambda x=x: adapter(x), "apply": lambda x=x: adapter.apply(x, tensors),
                 "program": lambda flat=flat, program=program: program(flat, *tensors)}
        samples: dict[str, list[float]] = {key: [] for key in calls}
        order = list(calls.items())
        for round_ in range(21):
            for key, fn in (order if round_ % 2 == 0 else order[::-1]):
                t0 = time.perf_counter()
                for _ in range(500):
                    fn()
                samples[key].append((time.perf_counter() - t0) / 500)
        best = {key: min(v) for key, v in samples.items()}
        out[name] = {"forward_s": best["forward"], "apply_s": best["apply"], "program_s": best["program"],
                     "dispatch_s": best["apply"] - best["program"]}
    return out


# ------------------------------------------------------------------ output
def _ms(s: float) -> str:
    return f"{s * 1e3:.3g}"


def _mib(b: float) -> str:
    return f"{b / 2**20:.3g}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    head = ("| graph | layer | T | FLOPs ours / greedy / optimal | fwd+bwd ms ours / greedy / optimal / einsum | "
            "ours vs optimal | peak MiB ours / optimal | planning ours cold ms / cached us | plan |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        f, t = r["flops"], r["time_s"]
        peak = r.get("peak_bytes")
        peak_text = f"{_mib(peak['ours'])} / {_mib(peak['optimal'])}" if peak else "-"
        decision = r["decisions"][0].split(" (")[0]
        lines.append(f"| {r['graph']} | {r['out']}x{r['in']} | {r['tokens']} | "
                     f"{f['ours']:.3g} / {f['greedy']:.3g} / {f['optimal']:.3g} | "
                     f"{_ms(t['ours'])} / {_ms(t['greedy'])} / {_ms(t['optimal'])} / {_ms(t['einsum'])} | "
                     f"{r['ratio_vs_optimal']:.2f}x | {peak_text} | "
                     f"{r['planning_s']['ours_cold'] * 1e3:.1f} / {r['planning_s']['ours_cached'] * 1e6:.2f} | "
                     f"{decision} |")
    return lines


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    graphs = args.graphs or catalog()
    rows = []
    for graph in graphs:
        for out_features, in_features in args.shapes:
            for tokens in args.rows:
                row = run_case(graph, out_features, in_features, tokens, args)
                rows.append(row)
                print(table([row])[-1], flush=True)
    extras = {"tt_memory": tt_memory_case(args), "planning_21": planning_21(args), "lora_t1": lora_t1(args),
              "adapter_dispatch": adapter_dispatch(args)}
    ratios = [r["ratio_vs_optimal"] for r in rows]
    summary = {"worst_ratio_vs_optimal": max(ratios), "median_ratio_vs_optimal": statistics.median(ratios),
               "max_cached_dispatch_us": max(r["planning_s"]["ours_cached"] for r in rows) * 1e6}
    print("\n".join(table(rows)))
    tt = extras["tt_memory"]
    print("\nTT (6 cores, modes 4, rank 8), 4096x4096, T=1024, training:")
    print("| plan | fwd+bwd ms | saved MiB (measured / predicted) | forward FLOPs | decision |")
    print("|---|---|---|---|---|")
    for name, r in tt.items():
        print(f"| {name} | {_ms(r['time_s'])} | {_mib(r['saved_bytes'])} / {_mib(r['predicted_saved_bytes'])} | "
              f"{r['flops']:.3g} | {r['decisions'][0]} |")
    print("\nCold planning, 21-tensor networks:")
    for name, r in extras["planning_21"].items():
        print(f"  {name}: {r['operands']} operands, cold plan {r['cold_s'] * 1e3:.1f} ms (exact search alone "
              f"{r['search_s'] * 1e3:.1f} ms; opt_einsum dp, FLOPs only: {r['opt_einsum_dp_s'] * 1e3:.1f} ms)")
    print("\nLoRA at T=1, generated program vs hand-written F.linear chain:")
    for shape, res in extras["lora_t1"].items():
        for mode, r in res.items():
            print(f"  {shape} {mode}: generated {r['generated_s'] * 1e6:.1f} us, hand {r['hand_s'] * 1e6:.1f} us, "
                  f"ratio {r['ratio']:.3f}")
    print("\nAdapter call overhead on top of its program (LoRA 1536x384, T=1, forward):")
    for name, r in extras["adapter_dispatch"].items():
        print(f"  {name}: program {r['program_s'] * 1e6:.1f} us, apply {r['apply_s'] * 1e6:.1f} us (dispatch "
              f"{r['dispatch_s'] * 1e6:.2f} us), forward with node tensors {r['forward_s'] * 1e6:.1f} us")
    print(f"\nsummary: {summary}")
    out = Path(args.output)
    meta = {"torch": torch.__version__, "opt_einsum": opt_einsum.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "processor": platform.processor() or platform.platform(),
            "cost_model": CostModel.for_device("cpu").to_dict()}
    write_json(out, {"meta": meta, "rows": rows, "extras": extras, "summary": summary})
    print(f"wrote {out}")
    return 0
