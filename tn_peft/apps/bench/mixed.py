"""``tn-peft bench mixed``: serving many adapters at once -- mixed-adapter batches (``adapter_names=``) against
peft's LoRA.

For each count N of loaded adapters (default 16, 256, 4096), side by side in one process:

- **load**: N saved Quantum-PEFT adapter folders (the catalog's r4, L1, random angles and s) loaded in one
  call (:meth:`~tn_peft.model.model.TnPeftModel.load_adapters`, an adapter bank) -- seconds for all N;
  peft's LoRA r4: the seconds per adapter of ``PeftModel.load_adapter`` with N already loaded (measured on
  ``--load-samples`` folders; peft's loading rescans every module per adapter, so loading N one by one
  grows as N^2; the N adapters themselves are built with peft's own ``_create_and_replace`` per layer,
  skipping its two sweeps over all adapters per new one while building, :func:`_no_sweeps_over_all_adapters`);
- **memory**: resident bytes per loaded adapter, measured in a fresh process (its RSS growth from the model
  with one adapter to the model with N, over N - 1; peft's over at most 512, its per-adapter size being
  independent of N), for tn_peft at rest and with its node cache filled (plus the cache's bytes per cached
  adapter, :meth:`~tn_peft.model.model.TnPeftModel.node_cache_info`), against peft LoRA r4's;
- **forward**: a batch of ``--batch-size`` sequences x ``--seq-len`` tokens of all-MiniLM-L6-v2 where row i
  uses adapter ``(i * max(1, N // batch)) mod N`` (``min(N, batch)`` distinct adapters, spread over all N),
  one forward with ``adapter_names``; median ms over ``--repeats`` alternated rounds (A B B A ...), after a
  warm-up forward that fills the node cache (its ms is the *cold* column);
- **generate**: the same adapters on a causal LM of MiniLM's size built from a transformers ``LlamaConfig``
  with random weights (no download; ``q_proj``/``v_proj`` play query/value), ``generate`` of
  ``--new-tokens`` greedy tokens for ``--batch-size`` prompts of 8 tokens with ``adapter_names``; tokens per second.

``max abs diff``: the largest difference between a bank member's mixed rows and the same folder loaded
with ``load_adapter`` and run alone through its planned program (no cache, no factor slabs).
Results go to ``-o/--output`` (default ``bench-results/mixed.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ...errors import require, warn
from ...io.atomic import write_json
from . import model_bench_device
from .step import _load_base, _model_folder

#: the causal LM of the generate column: MiniLM's width and depth, Llama's blocks, random weights
LM_CONFIG = dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=6,
                 num_key_value_heads=6, vocab_size=8192, max_position_embeddings=128)
LM_TARGETS = ["q_proj", "v_proj"]
#: peft LoRA's resident bytes per adapter are measured over at most this many adapters
PEFT_MEMORY_ADAPTERS = 512


# ---------------------------------------------------------------------- building
def _rss() -> int:
    """This process's resident bytes (Linux ``/proc/self/statm``; psutil elsewhere)."""
    gc.collect()
    statm = Path("/proc/self/statm")
    if statm.exists():
        import os

        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    import psutil

    return psutil.Process().memory_info().rss


def _causal_lm(device: str, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**LM_CONFIG)).to(device).eval()


def save_tn_folders(make_base: Callable[[], Any], targets: list[str], count: int, root: Path, seed: int,
                    folders: list[Path] | None = None) -> list[Path]:
    """Quantum-PEFT adapter folders ``root/a<i>`` up to ``count`` (extending ``folders``, those already saved), each
    with its own random angles and s (drawn from ``seed`` and i)."""
    import tn_peft

    folders = list(folders or [])
    if len(folders) >= count:
        return folders
    model = tn_peft.get_model(make_base(), tn_peft.AdapterConfig(graph="quantum_peft", target_modules=list(targets)))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for i in range(len(folders), count):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        with torch.no_grad():
            for name, p in params:
                scale = 0.1 if name.endswith(".nodes.s.values") else 1.0
                p.copy_(torch.randn(p.shape, generator=generator) * scale)
        folders.append(root / f"a{i}")
        model.save_pretrained(folders[-1])
    return folders


@contextlib.contextmanager
def _no_sweeps_over_all_adapters():
    """While building many peft adapters: skip the two sweeps over every adapter that each new one makes in each
    layer (O(adapters) per layer per adapter, so O(N^2) to build N): ``BaseTunerLayer.set_adapter`` sets
    ``requires_grad`` on every adapter (the model is frozen afterwards), and ``_move_adapter_to_device_of_base_layer``
    looks at every adapter's parameters for the meta device before moving the new one (here: only the new one's)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    set_adapter, move = BaseTunerLayer.set_adapter, BaseTunerLayer._move_adapter_to_device_of_base_layer

    def set_active(self, adapter_names, inference_mode: bool = False):
        self._active_adapter = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)

    def move_new(self, adapter_name, device=None):
        weight = self.get_base_layer().weight
        target = device if device is not None else weight.device
        for layer_name in self.adapter_layer_names + self.other_param_names:
            layer = getattr(self, layer_name, None)
            if isinstance(layer, torch.nn.ModuleDict) and adapter_name in layer:
                layer[adapter_name] = layer[adapter_name].to(target, dtype=weight.dtype if weight.is_floating_point()
                                                            else None)

    BaseTunerLayer.set_adapter, BaseTunerLayer._move_adapter_to_device_of_base_layer = set_active, move_new
    try:
        yield
    finally:
        BaseTunerLayer.set_adapter, BaseTunerLayer._move_adapter_to_device_of_base_layer = set_adapter, move


def peft_model(base, targets: list[str], count: int, seed: int, task_type: str | None = None):
    """peft's LoRA r4 with adapters ``a0 .. a<count-1>`` (random A and B), built with peft's own per-layer
    ``_create_and_replace`` (what ``add_adapter`` runs for each matching module, without its scan of every module)."""
    peft = require("peft", purpose="bench mixed (the LoRA baseline)")
    config = lambda: peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(targets),
                                     init_lora_weights=False, task_type=task_type)
    torch.manual_seed(seed)
    model = peft.get_peft_model(base, config(), "a0")
    add_peft_adapters(model, 1, count, config)
    model.requires_grad_(False)
    return model.eval()


def add_peft_adapters(model, start: int, stop: int, config: Callable[[], Any]) -> None:
    """Adapters ``a<start> .. a<stop-1>`` added to a peft LoRA model by peft's per-layer ``_create_and_replace``."""
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import _get_submodules

    tuner = model.base_model
    keys = [key for key, module in tuner.model.named_modules() if isinstance(module, LoraLayer)]
    with _no_sweeps_over_all_adapters():
        for i in range(start, stop):
            name, adapter_config = f"a{i}", config()
            model.peft_config[name] = adapter_config
            for key in keys:
                parent, target, target_name = _get_submodules(tuner.model, key)
                tuner._create_and_replace(adapter_config, name, target, target_name, parent, current_key=key)


def tn_model(base, folders: list[Path]):
    """A TnPeftModel serving ``folders`` as ``a0 ..``: the first loaded with from_pretrained, the rest as one bank."""
    import tn_peft

    model = tn_peft.TnPeftModel.from_pretrained(base, folders[0], "a0")
    if len(folders) > 1:
        model.load_adapters(folders[1:], names=[f"a{i}" for i in range(1, len(folders))])
    model.configure_node_cache(max_adapters=len(folders))
    return model.eval()


def resident_bytes(kind: str, model_folder: str, folders: list[Path], targets: list[str], count: int,
                   device: str) -> float:
    """Resident bytes per adapter of ``count`` adapters of ``kind`` (``tn_peft``: the folders as a bank; ``peft``:
    LoRA r4), measured in a fresh Python process (so that memory freed by earlier rows does not hide the growth):
    the RSS growth from the model with its first adapter to the model with all ``count``, over ``count - 1``."""
    import json
    import subprocess
    import sys

    spec = json.dumps({"kind": kind, "model": model_folder, "folders": [str(f) for f in folders[:count]],
                       "targets": targets, "count": count, "device": device})
    code = "import sys; from tn_peft.apps.bench.mixed import _resident_child; _resident_child(sys.stdin.read())"
    done = subprocess.run([sys.executable, "-c", code], input=spec, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the memory child for {kind} failed: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def _resident_child(spec: str) -> None:
    import json

    from ..finetune.methods import stay_offline

    torch.set_num_threads(1)
    stay_offline()
    spec = json.loads(spec)
    base = _load_base(spec["model"], spec["device"])
    folders, count = [Path(f) for f in spec["folders"]], spec["count"]
    model = tn_model(base, folders[:1]) if spec["kind"] == "tn_peft" else peft_model(base, spec["targets"], 1, seed=0)
    before = _rss()
    if spec["kind"] == "tn_peft":
        model.load_adapters(folders[1:], names=[f"a{i}" for i in range(1, count)])
    else:
        peft = require("peft", purpose="bench mixed (the LoRA baseline)")
        add_peft_adapters(model, 1, count, lambda: peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                                   target_modules=spec["targets"],
                                                                   init_lora_weights=False))
    after = _rss()
    print((after - before) / max(count - 1, 1), flush=True)
    del model


def _peft_load_seconds(model, folder: Path, samples: int) -> float:
    """Median seconds of peft's ``load_adapter`` of one saved LoRA folder into ``model`` (as it is loaded)."""
    times = []
    for i in range(samples):
        start = time.perf_counter()
        model.load_adapter(str(folder), adapter_name=f"loaded{i}")
        times.append(time.perf_counter() - start)
    for i in range(samples):
        model.delete_adapter(f"loaded{i}")
    return statistics.median(times)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _alternate(ways: dict[str, Callable[[], Any]], repeats: int, device: str) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in ways}
    order = list(ways)
    for r in range(repeats):
        for name in (order if r % 2 == 0 else order[::-1]):
            _sync(device)
            start = time.perf_counter()
            ways[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def _names(count: int, batch: int) -> list[str]:
    stride = max(1, count // batch)
    return [f"a{(i * stride) % count}" for i in range(batch)]


# ---------------------------------------------------------------------- measuring
def measure_count(folder: str, count: int, args: argparse.Namespace, device: str, *,
                  tn_folders: list[Path], lm_folders: list[Path] | None, lora_folder: Path | None,
                  lm_lora_folder: Path | None = None) -> dict[str, Any]:
    """One row: load, memory, forward and generate of ``count`` adapters, tn_peft against peft LoRA r4."""
    row: dict[str, Any] = {"adapters": count}
    names = _names(count, args.batch_size)
    row["distinct_in_batch"] = len(set(names))
    generator = torch.Generator().manual_seed(count)

    if getattr(args, "memory", True):
        row["tn_rest_bytes_per_adapter"] = resident_bytes("tn_peft", folder, tn_folders, args.targets, count, device)
        # peft's size per adapter does not depend on how many are loaded (modules per adapter): measured over at
        # most PEFT_MEMORY_ADAPTERS of them, as building thousands takes minutes
        row["peft_rest_bytes_per_adapter"] = resident_bytes("peft", folder, tn_folders, args.targets,
                                                            min(count, PEFT_MEMORY_ADAPTERS), device)
    base = _load_base(folder, device)
    rss = _rss()
    start = time.perf_counter()
    tn = tn_model(base, tn_folders[:count])
    row["tn_load_s"] = time.perf_counter() - start
    row.setdefault("tn_rest_bytes_per_adapter", (_rss() - rss) / count)
    memory = tn.adapter_memory()
    row["tn_tensor_bytes_per_adapter"] = memory["at_rest_bytes_per_adapter"]
    base = _load_base(folder, device)
    rss = _rss()
    lora = peft_model(base, args.targets, count, seed=count)
    row.setdefault("peft_rest_bytes_per_adapter", (_rss() - rss) / count)
    row["peft_tensor_bytes_per_adapter"] = sum(
        p.numel() * p.element_size() for n, p in lora.named_parameters() if ".a0." in n and "lora_" in n)
    if lora_folder is not None and args.load_samples > 0:
        row["peft_load_s_per_adapter"] = _peft_load_seconds(lora, lora_folder, args.load_samples)
        lora.requires_grad_(False)
        lora.eval()

    vocab = tn.base_model.config.vocab_size
    ids = torch.randint(1000, vocab, (args.batch_size, args.seq_len), generator=generator).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    ways = {"tn_peft mixed": lambda: tn(**batch, adapter_names=names).last_hidden_state,
            "peft LoRA mixed": lambda: lora(**batch, adapter_names=names).last_hidden_state}
    with torch.no_grad():
        cold = {}
        for name, fn in ways.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            cold[name] = time.perf_counter() - start
        cache = tn.node_cache_info()
        row["tn_cache_bytes_per_adapter"] = cache["bytes_per_adapter"]
        row["tn_cached_adapters"] = cache["adapters"]
        row["cold_ms"] = {k: 1000 * v for k, v in cold.items()}
        times = _alternate(ways, args.repeats, device)
        row["times_ms"] = {k: [1000 * t for t in v] for k, v in times.items()}
        row["median_ms"] = {k: statistics.median(v) for k, v in row["times_ms"].items()}
        row["mixed_vs_peft_lora"] = row["median_ms"]["tn_peft mixed"] / row["median_ms"]["peft LoRA mixed"]
        row["max_abs_difference"] = _difference(tn, tn_folders, names, batch, count)
    lora = None   # (not del: the timed lambdas above close over it)
    tn_memory = row["tn_rest_bytes_per_adapter"]
    row["tn_with_cache_bytes_per_adapter"] = tn_memory + row["tn_cache_bytes_per_adapter"]
    tn = ways = None
    gc.collect()
    if lm_folders is not None:
        row.update(_generate(args, device, count, lm_folders))
    return row


def _difference(tn, folders: list[Path], names: list[str], batch: dict, count: int) -> float:
    """Max |mixed rows - the same folder loaded alone and run by its planned program| over two adapters of the batch."""
    with torch.no_grad():
        mixed = tn(**batch, adapter_names=names).last_hidden_state
    worst = 0.0
    for name in sorted(set(names), key=names.index)[-2:]:
        index = int(name[1:])
        alone = f"alone{index}"
        tn.load_adapter(folders[index], alone)
        rows = [i for i, n in enumerate(names) if n == name]
        tn.set_adapter(alone)
        with torch.enable_grad():   # gradients on: no cache, no slabs, the adapter's own planned program
            one = tn(**{k: v[rows] for k, v in batch.items()}).last_hidden_state.detach()
        worst = max(worst, float((mixed[rows] - one).abs().max()))
        tn.set_adapter("a0")
        tn.delete_adapter(alone)
    return worst


def _generate(args: argparse.Namespace, device: str, count: int, folders: list[Path]) -> dict[str, Any]:
    """Tokens per second of ``generate`` with ``adapter_names`` on the causal LM, tn_peft against peft LoRA."""
    names = _names(count, args.batch_size)
    tn = tn_model(_causal_lm(device), folders[:count])
    lora = peft_model(_causal_lm(device), LM_TARGETS, count, seed=count + 1, task_type="CAUSAL_LM")
    generator = torch.Generator().manual_seed(count + 2)
    prompt = torch.randint(10, LM_CONFIG["vocab_size"], (args.batch_size, 8), generator=generator).to(device)
    options = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)
    ways = {"tn_peft": lambda: tn.generate(input_ids=prompt, adapter_names=names, **options),
            "peft LoRA": lambda: lora.generate(input_ids=prompt, adapter_names=names, **options)}
    with torch.no_grad():
        for fn in ways.values():
            fn()
        times = _alternate(ways, max(1, args.repeats // 2), device)
    tokens = args.batch_size * args.new_tokens
    rate = {k: tokens / statistics.median(v) for k, v in times.items()}
    return {"generate_tokens_per_s": rate, "generate_s": times,
            "generate_vs_peft_lora": rate["tn_peft"] / rate["peft LoRA"]}


def format_table(results: list[dict[str, Any]]) -> str:
    head = ("| adapters loaded | distinct in batch | tn_peft load s (all) | peft load s / adapter | "
            "tn_peft KB / adapter at rest | tn_peft KB / cached adapter | peft LoRA KB / adapter | "
            "tn_peft mixed ms (cold) | peft LoRA mixed ms (cold) | mixed / peft LoRA mixed | "
            "generate tok/s tn_peft | peft LoRA | tn_peft / peft | max abs diff |")
    lines = [head, "|" + "---:|" * 14]
    for r in results:
        m, c = r["median_ms"], r["cold_ms"]
        peft_load = r.get("peft_load_s_per_adapter")
        gen = r.get("generate_tokens_per_s")
        lines.append(
            f"| {r['adapters']} | {r['distinct_in_batch']} | {r['tn_load_s']:.2f} | "
            f"{'-' if peft_load is None else f'{peft_load:.2f}'} | {r['tn_rest_bytes_per_adapter'] / 1024:.1f} | "
            f"{r['tn_with_cache_bytes_per_adapter'] / 1024:.1f} | {r['peft_rest_bytes_per_adapter'] / 1024:.1f} | "
            f"{m['tn_peft mixed']:.1f} ({c['tn_peft mixed']:.0f}) | "
            f"{m['peft LoRA mixed']:.1f} ({c['peft LoRA mixed']:.0f}) | "
            f"**{r['mixed_vs_peft_lora']:.3f}x** | "
            + (f"{gen['tn_peft']:.0f} | {gen['peft LoRA']:.0f} | {r['generate_vs_peft_lora']:.2f}x | "
               if gen else "- | - | - | ")
            + f"{r['max_abs_difference']:.1e} |")
    return "\n".join(lines)


def run_rows(folder: str, counts: list[int], args: argparse.Namespace, device: str, *, generate: bool = True,
             out_of_time: Callable[[], bool] | None = None) -> tuple[list[dict[str, Any]], int]:
    """The rows for ``counts`` (folders saved as the counts grow), and how many were left for lack of time."""
    with tempfile.TemporaryDirectory(prefix="tn-peft-mixed-") as tmp:
        root = Path(tmp)
        lora_folder = None
        if args.load_samples > 0:
            saved = peft_model(_load_base(folder, device), args.targets, 1, seed=0)
            saved.save_pretrained(str(root / "lora"), selected_adapters=["a0"])
            lora_folder = next(p.parent for p in (root / "lora").rglob("adapter_config.json"))
            del saved
        tn_folders: list[Path] = []
        lm_folders: list[Path] | None = [] if generate else None
        rows, left = [], 0
        for count in counts:
            if out_of_time is not None and out_of_time():
                left += 1
                continue
            try:
                tn_folders = save_tn_folders(lambda: _load_base(folder, device), args.targets, count, root / "minilm",
                                             seed=0, folders=tn_folders)
                if lm_folders is not None:
                    lm_folders = save_tn_folders(lambda: _causal_lm(device), LM_TARGETS, count, root / "lm", seed=1,
                                                 folders=lm_folders)
                rows.append(measure_count(folder, count, args, device, tn_folders=tn_folders, lm_folders=lm_folders,
                                          lora_folder=lora_folder))
            except Exception as err:  # noqa: BLE001 - bench gpu reports a row that raised and goes on
                if out_of_time is None:
                    raise
                rows.append({"adapters": count, "error": f"{type(err).__name__}: {err}"})
        return rows, left


def run(args: argparse.Namespace) -> int:
    device = model_bench_device(args)
    folder = _model_folder(args.model)
    started = time.time()
    results, _ = run_rows(folder, list(args.adapters), args, device)
    table = format_table(results)
    print(f"bench mixed: all-MiniLM-L6-v2 forward, batch {args.batch_size} x {args.seq_len} tokens, row i uses adapter "
          f"(i * max(1, N // batch)) mod N, targets {args.targets}, Quantum-PEFT (r4, L1; a bank of saved folders) vs "
          f"peft LoRA r4; generate: {args.new_tokens} new tokens on a random MiniLM-sized Llama; {args.repeats} "
          f"alternated rounds, {device}, {torch.get_num_threads()} threads")
    print(table)
    config = {k: v for k, v in vars(args).items() if k not in ("handler",) and not callable(v)}
    out = write_json(args.output, {"benchmark": "mixed", "config": config, "results": results, "table": table,
                                   "environment": {"device": device, "torch": torch.__version__,
                                                   "threads": torch.get_num_threads(),
                                                   "seconds": round(time.time() - started, 1)}})
    print(f"wrote {out}")
    return 0
