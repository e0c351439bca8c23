"""The influence scan written without circuitdiff: the peers that benchmarks/scan.py times (issue #28 §0).

Each peer computes what ``circuitdiff.scan.scan(method="exact")`` computes: for every attention head
(its z slice, the input of W_O, replaced at every position) and every MLP (its output replaced), the
logit difference at each prompt's end position with that one component ablated, plus the clean one.
They are written the way an expert would write them by hand, on the model's own Hugging Face weights:

- ``hooks``: plain PyTorch. Per component, a forward pre-hook on ``transformer.h[l].attn.c_proj``
  (its input is the head-major concatenation of z) overwrites that head's slice, or a forward hook on
  ``transformer.h[l].mlp`` replaces its output; one full forward of every prompt batch per component,
  the logit difference read from the full logits at the end positions.
- ``transformer_lens``: TransformerLens 4.x. ``HookedTransformer`` is gone; a
  ``TransformerBridge.boot_transformers`` around the same HF model (no weight processing, so z and the
  MLP output mean what they mean in HF) and its ``transformer_lens.patching`` module, which works
  with the bridge: ``generic_activation_patch`` with TransformerLens's own
  ``layer_head_vector_patch_setter`` on ``hook_z`` (every position of one head, the function behind
  ``get_act_patch_attn_head_out_all_pos``) and a whole-activation setter on ``hook_mlp_out`` (the
  module has no all-positions MLP patch: ``get_act_patch_mlp_out`` patches one position at a time).
  The "clean cache" it patches from holds the replacement values, the metric returns the per-prompt
  logit difference (``reduce="none"``); one full forward per component and prompt batch. Tokens go in
  without an attention mask, as ``patching`` runs them: prompts are right-padded and every position
  read is a real token that attends only to earlier ones, so padding cannot reach it.
- ``nnsight_trace``: nnsight (an optional dependency, ``make bench``), ``NNsight(model)`` and one
  ``model.trace`` per component and prompt batch: the c_proj input slice edited in place, or the MLP
  output assigned; the two logits read from ``lm_head``'s output.
- ``nnsight_skip``: nnsight's expert idiom. One clean trace saves every block's output; then per
  component at layer l the blocks below l are skipped with ``.skip(clean output)`` (their input is
  unchanged, so is their output), the ablation is applied in block l, the final LayerNorm's output is
  read at the end positions and ``tracer.stop()`` ends the run there: the unembedding over the whole
  vocabulary never runs, the logit difference is ``ln_f(x_end) · (W_U[answer] − W_U[distractor])``.

Only the scanning differs from circuitdiff: :func:`prepare` takes the token ids, attention masks, end
positions, answer and distractor ids from circuitdiff's task view and the replacement values from
circuitdiff's own ablation rule (``circuitdiff.scan.exact.corrupted_run`` and
``circuitdiff.scan.ablation.replacement``: for ``mean``, each position's mean over the corrupted
prompts with a real token there), and the reference values from circuitdiff's exact scan. Computing
those means (one forward over the corrupted prompts) is therefore *not* in a peer's time, while it is
in circuitdiff's: the comparison favours the peers. Sequences are cut after the last end position, as
circuitdiff's exact scan cuts them (later positions cannot reach an answer). Each peer loads the model
itself (:func:`load_plain`: the same loader circuitdiff uses underneath, so the same weights, without
the bridge circuitdiff wraps around them), GPT-2 (``GPT2LMHeadModel``) only.

:func:`check` is the equality every peer passes before it is timed: per component, the mean over
prompts of (ablated LD − clean LD), the largest absolute difference from circuitdiff's exact scan over
the mean |clean LD|, at most :data:`TOLERANCE`.

``python benchmarks/peers.py --check`` runs every peer whose dependency is installed on a bundled
zoo model and fails unless each matches circuitdiff's exact scan; tests/engine/test_peers.py runs the
peers ``make test`` installs (hooks, transformer_lens). nnsight is not installed by ``make test`` and
tests are never skipped, so its peers are checked by this command only (after ``make bench``).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

if __name__ == "__main__":  # before torch imports tqdm: transformer_lens.patching draws a bar per call
    os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PEERS = ("hooks", "transformer_lens", "nnsight_trace", "nnsight_skip")
# one full forward per component: timed like the naive scan (``--naive-components``)
PER_COMPONENT_FORWARD = ("hooks", "transformer_lens", "nnsight_trace")
DEPENDENCY = {"hooks": None, "transformer_lens": "transformer_lens", "nnsight_trace": "nnsight",
              "nnsight_skip": "nnsight"}
TOLERANCE = 1e-4  # max |Δ mean(ablated LD − clean LD)| over the mean |clean LD|


def missing_dependency(peer: str) -> str | None:
    """Why ``peer`` cannot run here (its optional package is not installed), or None."""
    if peer not in DEPENDENCY:
        raise ValueError(f"unknown peer {peer!r}; choose from {', '.join(PEERS)}")
    dep = DEPENDENCY[peer]
    if dep is None or importlib.util.find_spec(dep) is not None:
        return None
    return f"{dep} is not installed: run `make bench`, which installs the optional .[bench] dependencies"


# ----------------------------------------------------------------------------- what circuitdiff gives
@dataclass
class ScanInputs:
    """One model's scan as circuitdiff sets it up, on the CPU.

    tokens, attention_mask: [n, t] right-padded, cut after the last end position; end_pos, answer,
    distractor: [n]; z_value[l]: [t, head, d_head] and mlp_value[l]: [t, d_model], what an ablated
    head / MLP of layer l is replaced with at each position; ref_clean [n] and ref_ablated
    [component, n] (float64): circuitdiff's exact scan, the values every peer must reproduce."""

    model_id: str
    components: list[str]
    tokens: torch.Tensor
    attention_mask: torch.Tensor
    end_pos: torch.Tensor
    answer: torch.Tensor
    distractor: torch.Tensor
    z_value: list[torch.Tensor]
    mlp_value: list[torch.Tensor]
    ref_clean: torch.Tensor
    ref_ablated: torch.Tensor

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "ScanInputs":
        return cls(**d)

    @property
    def n(self) -> int:
        return int(self.tokens.shape[0])


def prepare(adapter: Any, view: Any, model_id: str, ablation: str = "mean") -> ScanInputs:
    """circuitdiff's inputs, replacement values and exact-scan reference for one model.

    ``adapter``: circuitdiff's loaded model; ``view``: its TokenizedTask (``task.view(role)``)."""
    from circuitdiff.scan import scan
    from circuitdiff.scan.ablation import ablation_rule, replacement
    from circuitdiff.scan.exact import corrupted_run

    if ablation_rule(ablation).per_prompt:
        raise ValueError(f"the peers take one replacement value per position; {ablation} ablation has one per prompt")
    stack = adapter.functional()
    end = view.clean.end_pos
    t = int(end.max()) + 1
    with torch.no_grad():
        corrupt, c_mask = corrupted_run(stack, ablation, view.corrupted.tokens, view.corrupted.attention_mask, t)
        z_value, mlp_value = [], []
        for layer in range(stack.n_layers):
            like_z = torch.zeros(1, t, stack.n_heads, stack.d_head, dtype=stack.dtype, device=stack.device)
            like_m = torch.zeros(1, t, stack.d_model, dtype=stack.dtype, device=stack.device)
            z_c, m_c = (corrupt.z[layer], corrupt.mlp_out[layer]) if corrupt else (None, None)
            z_value.append(replacement(like_z, z_c, ablation, c_mask)[0].cpu())  # [t, head, d_head]
            mlp_value.append(replacement(like_m, m_c, ablation, c_mask)[0].cpu())  # [t, d_model]
    ref = scan(adapter, view, ablation, method="exact")
    if ref.method != "exact":
        raise ValueError(f"{model_id}: circuitdiff has no exact scan for this architecture")
    return ScanInputs(
        model_id=model_id, components=list(ref.components),
        tokens=view.clean.tokens[:, :t].cpu(), attention_mask=view.clean.attention_mask[:, :t].cpu(),
        end_pos=end.cpu(), answer=view.answer_ids.cpu(), distractor=view.distractor_ids.cpu(),
        z_value=[v.contiguous() for v in z_value], mlp_value=[v.contiguous() for v in mlp_value],
        ref_clean=ref.clean_ld.double().cpu(), ref_ablated=ref.ablated_ld.double().cpu(),
    )


def load_plain(model_id: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """(the plain HF model, its tokenizer): the weights circuitdiff loads for ``model_id``, without the
    TransformerLens bridge circuitdiff wraps around them."""
    if model_id.startswith("zoo:"):
        from circuitdiff.zoo.load import load_zoo

        model, tok = load_zoo(model_id)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(model_id, use_safetensors=True, trust_remote_code=False)
        tok = AutoTokenizer.from_pretrained(model_id, trust_remote_code=False)
    return model.to(device=device, dtype=dtype).eval(), tok


def unsupported(model: Any) -> str | None:
    """Why the peers cannot scan ``model`` (they address GPT-2's modules by name), or None."""
    name = type(model).__name__
    return None if name == "GPT2LMHeadModel" else f"the peers are written for GPT2LMHeadModel, not {name}"


def _parse(cid: str) -> tuple[int, int | None]:
    from circuitdiff.vocabulary import parse_component

    c = parse_component(cid)
    return c.layer, c.head


def _batches(n: int, size: int):
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


# ----------------------------------------------------------------------------- the peers
class Peer:
    """One way of scanning one model. ``scan(components)`` -> (clean LD [n], ablated LD [C, n]),
    float64 on the CPU. Everything done in ``__init__`` (wrapping the model) is not timed."""

    def __init__(self, model: Any, tokenizer: Any, inp: ScanInputs, batch_size: int = 32):
        self.model, self.tokenizer, self.inp, self.batch_size = model, tokenizer, inp, batch_size
        self.device = next(model.parameters()).device
        cfg = model.config
        self.n_heads, self.d_model = int(cfg.n_head), int(cfg.n_embd)
        self.d_head = self.d_model // self.n_heads
        dev = self.device
        self.tokens, self.mask = inp.tokens.to(dev), inp.attention_mask.to(dev)
        self.end, self.ans, self.dis = inp.end_pos.to(dev), inp.answer.to(dev), inp.distractor.to(dev)
        dtype = next(model.parameters()).dtype
        self.z_value = [v.to(dev, dtype) for v in inp.z_value]  # [t, head, d_head]
        self.mlp_value = [v.to(dev, dtype) for v in inp.mlp_value]  # [t, d_model]

    def scan(self, components: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _ld_from_logits(self, logits: torch.Tensor, b: slice) -> torch.Tensor:
        rows = torch.arange(logits.shape[0], device=logits.device)
        at_end = logits[rows, self.end[b]]  # [rows, vocab]
        return at_end[rows, self.ans[b]] - at_end[rows, self.dis[b]]


class HooksPeer(Peer):
    """Plain PyTorch forward hooks on the HF modules, one full forward per component and batch."""

    @torch.no_grad()
    def _lds(self) -> torch.Tensor:
        out = []
        for b in _batches(self.inp.n, self.batch_size):
            logits = self.model(input_ids=self.tokens[b], attention_mask=self.mask[b]).logits
            out.append(self._ld_from_logits(logits, b))
        return torch.cat(out)

    def scan(self, components):
        clean = self._lds()
        rows = []
        for cid in components:
            layer, head = _parse(cid)
            block = self.model.transformer.h[layer]
            if head is not None:
                value = self.z_value[layer][:, head]  # [t, d_head]
                cols = slice(head * self.d_head, (head + 1) * self.d_head)

                def pre_hook(module, args, value=value, cols=cols):
                    args[0][:, :, cols] = value  # c_proj's input: z concatenated head-major
                handle = block.attn.c_proj.register_forward_pre_hook(pre_hook)
            else:
                value = self.mlp_value[layer]  # [t, d_model]

                def hook(module, args, output, value=value):
                    return value.expand_as(output)
                handle = block.mlp.register_forward_hook(hook)
            try:
                rows.append(self._lds())
            finally:
                handle.remove()
        return clean.double().cpu(), torch.stack(rows).double().cpu()


def _whole_activation_setter(corrupted_activation, index, clean_activation):
    """A TransformerLens patch setter for index = [layer]: every position of the activation."""
    corrupted_activation[...] = clean_activation
    return corrupted_activation


class TransformerLensPeer(Peer):
    """TransformerLens 4.x: TransformerBridge + ``transformer_lens.patching.generic_activation_patch``."""

    def __init__(self, model, tokenizer, inp, batch_size=32):
        super().__init__(model, tokenizer, inp, batch_size)
        from transformer_lens.model_bridge import TransformerBridge

        # Booted around the already loaded model (no hub access). The bridge normalises the tokenizer it
        # gets (and would reload it with add_bos_token from name_or_path): give it a copy flagged as
        # BOS-aware. It never tokenizes here: the inputs are token ids.
        btok = copy.deepcopy(tokenizer)
        btok.init_kwargs["name_or_path"] = btok.init_kwargs.get("name_or_path") or inp.model_id
        btok.init_kwargs["add_bos_token"] = True
        dtype = next(model.parameters()).dtype
        self.bridge = TransformerBridge.boot_transformers(inp.model_id, hf_model=model, tokenizer=btok,
                                                          device=self.device, dtype=dtype)
        self.bridge.eval()

    def scan(self, components):
        import pandas as pd
        from transformer_lens import patching

        parsed = [_parse(c) for c in components]
        heads = [(i, lh) for i, lh in enumerate(parsed) if lh[1] is not None]
        mlps = [(i, lh) for i, lh in enumerate(parsed) if lh[1] is None]
        head_df = pd.DataFrame([lh for _, lh in heads], columns=["layer", "head"])
        mlp_df = pd.DataFrame([lh[0] for _, lh in mlps], columns=["layer"])
        n = self.inp.n
        clean = torch.empty(n, dtype=torch.float64)
        out = torch.empty(len(parsed), n, dtype=torch.float64)
        with torch.no_grad():
            for b in _batches(n, self.batch_size):
                tokens = self.tokens[b]
                rows = tokens.shape[0]
                metric = lambda logits, b=b: self._ld_from_logits(logits, b)  # noqa: E731  [batch]
                clean[b] = metric(self.bridge(tokens)).double().cpu()
                # the replacement values as the "clean cache" patching reads from
                cache = {}
                for layer in range(len(self.z_value)):
                    cache[f"blocks.{layer}.attn.hook_z"] = self.z_value[layer][None].expand(rows, -1, -1, -1)
                    cache[f"blocks.{layer}.hook_mlp_out"] = self.mlp_value[layer][None].expand(rows, -1, -1)
                if heads:
                    res = patching.generic_activation_patch(
                        self.bridge, tokens, cache, metric, patching.layer_head_vector_patch_setter, "z",
                        index_df=head_df, reduce="none")
                    out[[i for i, _ in heads], b] = res.values.double().cpu()  # [heads, batch]
                if mlps:
                    res = patching.generic_activation_patch(
                        self.bridge, tokens, cache, metric, _whole_activation_setter, "mlp_out",
                        index_df=mlp_df, reduce="none")
                    out[[i for i, _ in mlps], b] = res.values.double().cpu()
        return clean, out


class NnsightTracePeer(Peer):
    """nnsight 0.8: one ``model.trace`` per component and batch, the full forward."""

    def __init__(self, model, tokenizer, inp, batch_size=32):
        super().__init__(model, tokenizer, inp, batch_size)
        from nnsight import NNsight

        self.nn = NNsight(model)

    @torch.no_grad()
    def _trace(self, b: slice, layer: int | None = None, head: int | None = None) -> torch.Tensor:
        m = self.nn
        with m.trace(input_ids=self.tokens[b], attention_mask=self.mask[b]):
            if layer is not None and head is not None:
                cols = slice(head * self.d_head, (head + 1) * self.d_head)
                m.transformer.h[layer].attn.c_proj.input[:, :, cols] = self.z_value[layer][:, head]
            elif layer is not None:
                out = m.transformer.h[layer].mlp.output
                m.transformer.h[layer].mlp.output = self.mlp_value[layer].expand_as(out)
            ld = self._ld_from_logits(m.lm_head.output, b).save()
        return ld

    def scan(self, components):
        n = self.inp.n
        clean = torch.cat([self._trace(b) for b in _batches(n, self.batch_size)])
        rows = []
        for cid in components:
            layer, head = _parse(cid)
            rows.append(torch.cat([self._trace(b, layer, head) for b in _batches(n, self.batch_size)]))
        return clean.double().cpu(), torch.stack(rows).double().cpu()


class NnsightSkipPeer(NnsightTracePeer):
    """nnsight 0.8, the expert idiom: the blocks below the ablated layer skipped (their cached clean
    output fed in with ``.skip``), the run stopped after the final LayerNorm (``tracer.stop()``)."""

    def __init__(self, model, tokenizer, inp, batch_size=32):
        super().__init__(model, tokenizer, inp, batch_size)
        w_u = model.lm_head.weight  # [vocab, d_model], tied to wte (GPT-2 has no unembedding bias)
        self.direction = w_u[self.ans] - w_u[self.dis]  # [n, d_model]

    def _ld_from_final(self, x: torch.Tensor, b: slice) -> torch.Tensor:
        rows = torch.arange(x.shape[0], device=x.device)
        return (x[rows, self.end[b]] * self.direction[b]).sum(-1)  # ln_f(x_end) · (W_U[ans] − W_U[dis])

    @torch.no_grad()
    def _clean(self, b: slice) -> tuple[torch.Tensor, list[torch.Tensor]]:
        m = self.nn
        outs: list[torch.Tensor] = []  # filled inside the trace (only saved values leave it by name)
        with m.trace(input_ids=self.tokens[b], attention_mask=self.mask[b]) as tracer:
            for i in range(len(m.transformer.h)):
                outs.append(m.transformer.h[i].output.save())
            ld = self._ld_from_final(m.transformer.ln_f.output, b).save()
            tracer.stop()
        return ld, outs

    @torch.no_grad()
    def _ablated(self, b: slice, cached: list[torch.Tensor], layer: int, head: int | None) -> torch.Tensor:
        m = self.nn
        with m.trace(input_ids=self.tokens[b], attention_mask=self.mask[b]) as tracer:
            for i in range(layer):  # in execution order: blocks 0 .. layer-1 do not run
                m.transformer.h[i].skip(cached[i])
            if head is not None:
                cols = slice(head * self.d_head, (head + 1) * self.d_head)
                m.transformer.h[layer].attn.c_proj.input[:, :, cols] = self.z_value[layer][:, head]
            else:
                out = m.transformer.h[layer].mlp.output
                m.transformer.h[layer].mlp.output = self.mlp_value[layer].expand_as(out)
            ld = self._ld_from_final(m.transformer.ln_f.output, b).save()
            tracer.stop()  # lm_head (the whole vocabulary) never runs
        return ld

    def scan(self, components):
        n = self.inp.n
        parts = [(b, *self._clean(b)) for b in _batches(n, self.batch_size)]
        clean = torch.cat([ld for _, ld, _ in parts])
        rows = []
        for cid in components:
            layer, head = _parse(cid)
            rows.append(torch.cat([self._ablated(b, cached, layer, head) for b, _, cached in parts]))
        return clean.double().cpu(), torch.stack(rows).double().cpu()


PEER_CLASSES: dict[str, Callable[..., Peer]] = {
    "hooks": HooksPeer, "transformer_lens": TransformerLensPeer, "nnsight_trace": NnsightTracePeer,
    "nnsight_skip": NnsightSkipPeer,
}
assert tuple(PEER_CLASSES) == PEERS


def make_peer(name: str, model: Any, tokenizer: Any, inp: ScanInputs, batch_size: int = 32) -> Peer:
    why = missing_dependency(name)
    if why:
        raise ImportError(f"peer {name}: {why}")
    return PEER_CLASSES[name](model, tokenizer, inp, batch_size)


# ----------------------------------------------------------------------------- the equality check
def check(inp: ScanInputs, clean: torch.Tensor, ablated: torch.Tensor, components: Sequence[str] | None = None
          ) -> float:
    """Per component, mean over prompts of (ablated LD − clean LD), peer vs circuitdiff's exact scan:
    the largest absolute difference over the mean |clean LD| of the exact scan."""
    components = list(inp.components if components is None else components)
    index = [inp.components.index(c) for c in components]
    ref = (inp.ref_ablated[index] - inp.ref_clean[None]).mean(1)
    got = (ablated.double() - clean.double()[None]).mean(1)
    scale = float(inp.ref_clean.abs().mean())
    return float((got - ref).abs().max()) / scale


def sample(components: Sequence[str], n: int) -> list[str]:
    """n components spread evenly over the canonical order (as benchmarks/scan.py samples the naive scan)."""
    if n <= 0 or n >= len(components):
        return list(components)
    step = len(components) / n
    return [components[int(i * step)] for i in range(n)]


def run_role(name: str, inp: ScanInputs, device: str = "cpu", batch_size: int = 32, timed_components: int = 0,
             log: Callable[[str], None] = lambda m: None) -> dict:
    """One peer on one model: the check against the exact scan (untimed; on the timed sample for a peer
    timed on one), then, if it passed, the timed scan (every component, or ``timed_components`` >= 2 of them and one, the per-component part
    extrapolated to all, for the peers that run one full forward per component)."""
    model, tok = load_plain(inp.model_id, device=device)
    why = unsupported(model)
    if why:
        return {"skipped": why}
    peer = make_peer(name, model, tok, inp, batch_size)
    # a peer timed on a sample is checked on that sample (checking all of them would cost the full
    # naive scan the sample avoids); every other peer is checked on every component
    comps = sample(inp.components, timed_components) if name in PER_COMPONENT_FORWARD else list(inp.components)
    clean, ablated = peer.scan(comps)
    rel = check(inp, clean, ablated, comps)
    out: dict[str, Any] = {"max_abs_diff_rel": rel, "passed": rel <= TOLERANCE, "components": len(inp.components),
                           "checked_components": len(comps)}
    log(f"peer {name} {inp.model_id}: max |diff| {rel:.3g} of the clean LD scale on {len(comps)} components")
    if not out["passed"]:
        return out
    sync = (lambda: torch.cuda.synchronize()) if torch.device(device).type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    c2, a2 = peer.scan(comps)
    sync()
    dt = time.perf_counter() - t0
    out["timed_components"] = len(comps)
    # the timed run repeats the checked one: the same numbers (nothing in it is random)
    out["timed_run_max_abs_diff_rel"] = check(inp, c2, a2, comps)
    if len(comps) < len(inp.components):
        sync()
        t1 = time.perf_counter()
        peer.scan(comps[:1])
        sync()
        one = time.perf_counter() - t1
        per = max(0.0, (dt - one) / (len(comps) - 1))
        out["fixed_seconds"] = max(0.0, one - per)
        out["seconds"] = out["fixed_seconds"] + per * len(inp.components)
    else:
        out["seconds"] = dt
    log(f"peer {name} {inp.model_id}: {dt:.1f}s for {len(comps)} of {len(inp.components)} components")
    return out


# ----------------------------------------------------------------------------- stand-alone check
def _self_check(model_id: str, prompts: int, peers: Sequence[str]) -> int:
    """Every peer whose dependency is installed against circuitdiff's exact scan; exit 1 on a failure."""
    from circuitdiff.catalogue import task_items
    from circuitdiff.models.loading import load_model
    from circuitdiff.tasks.dataset import build_task_data

    torch.manual_seed(0)
    adapter = load_model(model_id)
    items = task_items("ioi", {}, prompts, seed=0)
    # the task layer expects a pair: the same model twice
    task = build_task_data(items, {"teacher": adapter.tokenizer, "student": adapter.tokenizer}, name="ioi")
    inp = prepare(adapter, task.view("teacher"), model_id)
    failed = 0
    for name in peers:
        why = missing_dependency(name)
        if why:
            print(f"peer_{name}: not checked ({why})")
            continue
        model, tok = load_plain(model_id)
        clean, ablated = make_peer(name, model, tok, inp, batch_size=max(1, prompts // 2)).scan(inp.components)
        rel = check(inp, clean, ablated)
        ok = rel <= TOLERANCE
        failed += not ok
        print(f"peer_{name}_max_abs_diff_rel: {rel:.3g} ({'ok' if ok else 'FAILED'}, limit {TOLERANCE:g})")
    return 1 if failed else 0


def main() -> int:
    p = argparse.ArgumentParser(description="Check the influence-scan peers against circuitdiff's exact scan.")
    p.add_argument("--check", action="store_true", required=True)
    p.add_argument("--model", default="zoo:gpt-teacher")
    p.add_argument("--prompts", type=int, default=6)
    p.add_argument("--peers", default=",".join(PEERS))
    args = p.parse_args()
    torch.set_num_threads(1)
    return _self_check(args.model, args.prompts, args.peers.split(","))


if __name__ == "__main__":
    raise SystemExit(main())
