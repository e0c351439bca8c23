"""Load + scan at the real shapes of the paper's Llama pair (issue #14 §3), random weights.

Builds ``meta-llama/Llama-3.1-8B`` and ``nvidia/Llama-3.1-Minitron-4B-Depth-Base`` shaped models
(circuitdiff.catalogue.HUB_SHAPES) with random weights directly on the devices the memory plan chooses
(circuitdiff.models.placement: bfloat16 by the ``auto`` rule, one GPU or layers spread over the
visible GPUs), then times, side by side in one run:

- ``load_s``: plan + build on the device(s);
- ``clean_s``: one clean pass (the scan's forward) over the prompts;
- ``exact_s``: the exact scan of every head and MLP (zero ablation), with the micro-batch size it ran;
- ``naive_s_est``: the naive scan timed on one layer's components and extrapolated to all of them
  (a full naive scan of the 8B model is 1,056 full forwards);
- ``speedup_exact_vs_naive`` = naive_s_est / exact_s; ``teacher_over_student`` time ratios;
- ``peak_cuda_gib`` per device.

Usage (a GPU machine; exits 2 with a message without CUDA unless ``--device cpu``):

    .venv/bin/python benchmarks/llama_scale.py                      # both models, 32 prompts of 48 tokens
    .venv/bin/python benchmarks/llama_scale.py --prompts 100 --seq 64
    .venv/bin/python benchmarks/llama_scale.py --device cpu --shrink 32 --prompts 4   # a CPU smoke run

``--shrink k`` divides the widths (hidden, MLP, vocabulary) by k and keeps layers, query heads and
key/value heads: the real ratios at a size a CPU can run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch


def config_for(name: str, shrink: int, layers: int = 0):
    from transformers import LlamaConfig

    from circuitdiff.catalogue import HUB_SHAPES

    shape = {k: v for k, v in HUB_SHAPES[name].items() if k != "model_type"}
    if shrink > 1:
        for k in ("hidden_size", "intermediate_size", "vocab_size"):
            shape[k] //= shrink
    if layers > 0:  # the first ``layers`` blocks at real width: what fits a time budget (the script says so)
        shape["num_hidden_layers"] = min(layers, shape["num_hidden_layers"])
    return LlamaConfig(**shape, attn_implementation="eager")


def build(cfg, plan, device: torch.device):
    """Random weights on the planned device(s): built on the (first) device, then dispatched over the
    GPUs with accelerate when the plan spreads the layers."""
    from transformers import LlamaForCausalLM

    dtype = getattr(torch, plan.dtype)
    home = torch.device(plan.devices[0]) if plan.device_map is None else torch.device("cpu")
    with torch.device(home):
        model = LlamaForCausalLM._from_config(cfg, dtype=dtype).eval()
    if plan.device_map is not None:
        from accelerate import dispatch_model

        model = dispatch_model(model, device_map=plan.device_map)
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--seq", type=int, default=48, help="tokens per prompt")
    ap.add_argument("--shrink", type=int, default=1, help="divide the widths by this (CPU smoke runs)")
    ap.add_argument("--naive-layer", type=int, default=1, help="the layer whose components time the naive scan")
    ap.add_argument("--layers", type=int, default=0, help="keep only this many layers (0: all; widths stay real)")
    ap.add_argument("--screened", action="store_true", help="also time the screened scan (exact top-20 + screen)")
    ap.add_argument("--teacher-only", action="store_true", help="the 8B-shaped teacher only")
    ap.add_argument("--seed", type=int, default=0, help="the random weights' and prompts' seed")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device visible; run on a GPU machine, or --device cpu --shrink 32", file=sys.stderr)
        return 2

    from circuitdiff.models.functional import functional_view
    from circuitdiff.models.hooks import HooksAdapter
    from circuitdiff.models.placement import Workload, available_memory, plan_memory
    from circuitdiff.scan.exact import exact_scan
    from circuitdiff.vocabulary import component_ids, parse_component
    from circuitdiff.models.adapter import Batch, Intervention

    device = torch.device(args.device)
    if device.type == "cuda":
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        print(f"device: {torch.cuda.device_count()} x {', '.join(names)}; torch {torch.__version__}")
    else:
        print(f"device: cpu {platform.machine()} x{torch.get_num_threads()} threads; torch {torch.__version__}")
    print(f"prompts: {args.prompts} x {args.seq} tokens; shrink {args.shrink}; "
          f"layers {args.layers or 'all'}")
    results = {}
    models = (("teacher", "meta-llama/Llama-3.1-8B"), ("student", "nvidia/Llama-3.1-Minitron-4B-Depth-Base"))
    for role, name in models[:1] if args.teacher_only else models:
        cfg = config_for(name, args.shrink, args.layers)
        t0 = time.perf_counter()
        plan = plan_memory(cfg, "auto", Workload(args.prompts, args.seq), available_memory(device), model_id=name)
        torch.manual_seed(args.seed)  # the random weights: the same model for every run of one seed
        model = build(cfg, plan, device)
        sync(device)
        load_s = time.perf_counter() - t0
        adapter = HooksAdapter(model, None, {"id": name}, torch.device(plan.devices[0]), getattr(torch, plan.dtype))
        view = functional_view(model)
        g = torch.Generator().manual_seed(args.seed)
        tokens = torch.randint(1, cfg.vocab_size, (args.prompts, args.seq), generator=g)
        mask = torch.ones_like(tokens)
        end = torch.full((args.prompts,), args.seq - 1)
        ans, dis = torch.randint(1, cfg.vocab_size, (2, args.prompts), generator=g)
        batch = Batch(tokens, mask, end)

        t0 = time.perf_counter()
        adapter.run(batch, token_ids=torch.stack([ans, dis], 1))
        sync(device)
        clean_s = time.perf_counter() - t0

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = exact_scan(view, tokens, mask, end, ans, dis, "zero")
        sync(device)
        exact_s = time.perf_counter() - t0

        screened_s = None
        if args.screened:
            from types import SimpleNamespace

            from circuitdiff.scan.screened import screened_method

            # the corrupted prompts: the clean ones with their last token replaced (an IOI-like contrast)
            corrupted = tokens.clone()
            corrupted[:, -1] = torch.randint(1, cfg.vocab_size, (args.prompts,), generator=g)
            task_view = SimpleNamespace(clean=SimpleNamespace(tokens=tokens, attention_mask=mask, end_pos=end),
                                        corrupted=SimpleNamespace(tokens=corrupted, attention_mask=mask),
                                        answer_ids=ans, distractor_ids=dis)
            comps = [parse_component(c) for c in component_ids(cfg.num_hidden_layers, cfg.num_attention_heads)]
            t0 = time.perf_counter()
            scr = screened_method(adapter, task_view, "zero", stack=view, components=comps)
            sync(device)
            screened_s = time.perf_counter() - t0
        layer = min(args.naive_layer, cfg.num_hidden_layers - 1)
        ids = [c for c in component_ids(cfg.num_hidden_layers, cfg.num_attention_heads)
               if parse_component(c).layer == layer]
        t0 = time.perf_counter()
        naive = []
        for c in ids:
            lg = adapter.run(batch, [Intervention(parse_component(c))], token_ids=torch.stack([ans, dis], 1)).logits
            naive.append((lg[:, 0] - lg[:, 1]).float().cpu())
        sync(device)
        naive_layer_s = time.perf_counter() - t0
        n_components = len(out.components)
        naive_s_est = naive_layer_s * n_components / len(ids)
        # the exact scan's numbers for that layer against the naive forwards (bf16: rounding-level agreement)
        idx = [out.components.index(c) for c in ids]
        diff = (out.ablated_ld[idx].float().cpu() - torch.stack(naive)).abs().max().item()
        scale = out.clean_ld.float().abs().mean().item()
        peak = ({d: torch.cuda.max_memory_allocated(d) / 2**30 for d in range(torch.cuda.device_count())}
                if device.type == "cuda" else {})
        results[role] = dict(load_s=load_s, clean_s=clean_s, exact_s=exact_s, naive_s_est=naive_s_est)
        print(f"{role}: {name}  params {plan.n_params / 1e9:.2f}B  dtype {plan.dtype}  devices {plan.devices}"
              f"  layers/device {plan.layers_per_device or {plan.devices[0]: cfg.num_hidden_layers}}")
        print(f"{role}_plan_needed_gib: {plan.needed_bytes / 2**30:.2f} (weights {plan.weight_bytes / 2**30:.2f}, "
              f"activations {plan.activation_bytes / 2**30:.2f})")
        print(f"{role}_load_s: {load_s:.2f}")
        print(f"{role}_clean_s: {clean_s:.3f}")
        print(f"{role}_exact_s: {exact_s:.2f}  ({n_components} components, micro-batch {out.microbatch_rows} rows)")
        if screened_s is not None:
            print(f"{role}_screened_s: {screened_s:.2f}  ({scr.agreement['n_exact']} of {n_components} re-scanned "
                  f"exactly)")
            print(f"{role}_speedup_screened_vs_exact: {exact_s / screened_s:.2f}")
            # checked against the exact scan above: the values marked exact and the top-k (screen_top)
            full = {c: (out.ablated_ld[i].double() - out.clean_ld.double()).mean().abs().item()
                    for i, c in enumerate(out.components)}
            got, flags = scr.influences(), dict(zip(scr.components, scr.is_exact()))
            k = scr.agreement["screen_top"]
            top = lambda v: set(sorted(v, key=lambda c: -v[c])[:k])  # noqa: E731
            worst = max(abs(got[c] - full[c]) for c in got if flags[c])
            print(f"{role}_screened_top{k}_identical: {top(got) == top(full)}")
            print(f"{role}_screened_max_exact_diff_rel: {worst / max(out.clean_ld.float().abs().mean().item(), 1e-6):.2e}  "
                  f"(error model {scr.agreement['error_model']}, safety {scr.agreement['safety']})")
        print(f"{role}_naive_s_est: {naive_s_est:.2f}  (layer {layer}: {len(ids)} forwards in {naive_layer_s:.2f} s)")
        print(f"{role}_speedup_exact_vs_naive: {naive_s_est / exact_s:.2f}")
        print(f"{role}_exact_vs_naive_max_abs_ld_diff_rel: {diff / max(scale, 1e-6):.2e}")
        for d, gib in peak.items():
            print(f"{role}_peak_cuda_gib_{d}: {gib:.2f}")
        del model, view, adapter, out
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for k in ("load_s", "clean_s", "exact_s", "naive_s_est") if len(results) == 2 else ():
        print(f"teacher_over_student_{k}: {results['teacher'][k] / results['student'][k]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
