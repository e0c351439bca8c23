"""Exact influence scan for GPT-2-family models, without one full forward per component.

The naive scan (PAPER.md §Method 1) ablates each head / MLP alone and reruns the whole model,
computing logits over the whole vocabulary at every position: 156 passes for GPT-2. Almost all of
that work is identical between passes, so this module computes exactly the same numbers with less:

1. One clean pass keeps, per layer l, the residual stream before the attention block
   (``resid_pre[l]``) and after it (``resid_mid[l]``), and the per-head output before W_O
   (``z[l]``). Nothing before layer l depends on an ablation at layer l.
2. A head h at layer l changes only its slice of ``z[l]``; the attention output is linear in z
   (c_proj), so ``resid_mid`` becomes ``resid_mid[l] + (z_abl - z_clean)[:, :, h] @ W_O[h]``.
   Then the MLP of layer l and the blocks above are rerun. An MLP at layer l replaces
   ``mlp_out[l]``: ``resid_post = resid_mid[l] + mlp_abl``, then the blocks above.
3. Causal attention means the answer position never sees a later position, so sequences are cut
   after the last end position, and the last block computes queries, its MLP and the final
   LayerNorm only at each prompt's end position (keys and values still at every position).
4. The logit difference needs two unembedding columns, not the vocabulary:
   ``LD = ln_f(x_end) · (W_U[answer] - W_U[distractor])``.
5. All ablations of one layer go through the blocks above it together, stacked along the batch
   dimension, in micro-batches sized from free memory (halved and retried on out-of-memory).

Each step is an algebraic identity, so results equal the naive scan up to float rounding
(tests/test_fast_scan.py checks 1e-5 for zero, mean and resample ablation of heads and MLPs).
Dropout is inactive (eval); the model's own modules (LayerNorm, Conv1D, MLP) do the arithmetic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import torch
import torch.nn.functional as F

from .components import component_ids, parse_component

AblationKind = Literal["zero", "mean", "resample"]


class UnsupportedModelError(TypeError):
    """The model is not a GPT-2-family HF model; the caller falls back to the naive scan."""


# ----------------------------------------------------------------------------- the model
def gpt2_of(model: Any) -> Any:
    """The ``GPT2LMHeadModel`` behind an adapter (``bridge.original_model`` / ``hf_model``) or the
    model itself. Raises :class:`UnsupportedModelError` for anything else."""
    for attr in ("hf_model",):
        if getattr(model, attr, None) is not None:
            model = getattr(model, attr)
            break
    else:
        bridge = getattr(model, "bridge", None)
        if bridge is not None and getattr(bridge, "original_model", None) is not None:
            model = bridge.original_model
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) != "gpt2" or not hasattr(model, "transformer"):
        raise UnsupportedModelError(f"exact fast scan supports GPT-2-family models, not {type(model).__name__}")
    if getattr(cfg, "add_cross_attention", False) or getattr(cfg, "reorder_and_upcast_attn", False):
        raise UnsupportedModelError("GPT-2 variants with cross-attention or reordered attention are not supported")
    return model


def _unwrap(module: Any) -> Any:
    """The HF module under transformer_lens bridge wrappers. The bridge replaces HF submodules in
    place with hooked components that keep the original as ``original_component``; the scan
    reads raw weights so that no hook runs and the arithmetic is the plain HF one."""
    while getattr(module, "original_component", None) is not None:
        module = module.original_component
    return module


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """HF ``Conv1D`` (a linear layer with weight [in, out]), the same addmm it runs."""
    return torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight).view(*x.shape[:-1], weight.shape[1])


@dataclass
class _Layer:
    ln1: tuple[torch.Tensor, torch.Tensor]
    w_qkv: torch.Tensor  # [d_model, 3 d_model]
    b_qkv: torch.Tensor
    w_o: torch.Tensor  # [d_model (head-major z), d_model]
    b_o: torch.Tensor
    ln2: tuple[torch.Tensor, torch.Tensor]
    w_in: torch.Tensor  # [d_model, d_mlp]
    b_in: torch.Tensor
    w_out: torch.Tensor  # [d_mlp, d_model]
    b_out: torch.Tensor
    scaling: float


class Gpt2View:
    """The weights of a GPT2LMHeadModel and the block arithmetic, with shapes written down once."""

    def __init__(self, model: Any):
        from transformers.activations import ACT2FN

        cfg = model.config
        t = _unwrap(model.transformer)
        self.n_layers = int(cfg.n_layer)
        self.n_heads = int(cfg.n_head)
        self.d_model = int(cfg.n_embd)
        self.d_head = self.d_model // self.n_heads
        self.d_mlp = int(cfg.n_inner or 4 * self.d_model)
        self.eps = float(cfg.layer_norm_epsilon)
        self.act = ACT2FN[cfg.activation_function]
        ln = lambda m: (_unwrap(m).weight, _unwrap(m).bias)  # noqa: E731
        lin = lambda m: (_unwrap(m).weight, _unwrap(m).bias)  # noqa: E731
        self.layers = []
        for i in range(self.n_layers):
            blk = _unwrap(t.h[i])
            attn, mlp = _unwrap(blk.attn), _unwrap(blk.mlp)
            scaling = getattr(attn, "scaling", None)
            if scaling is None:  # older transformers: derive it the way GPT2Attention does
                scaling = (self.d_head**-0.5 if cfg.scale_attn_weights else 1.0) / (
                    float(i + 1) if cfg.scale_attn_by_inverse_layer_idx else 1.0
                )
            self.layers.append(
                _Layer(ln(blk.ln_1), *lin(attn.c_attn), *lin(attn.c_proj), ln(blk.ln_2),
                       *lin(mlp.c_fc), *lin(mlp.c_proj), float(scaling))
            )
        self.ln_f = ln(t.ln_f)
        self.w_te = _unwrap(t.wte).weight  # [vocab, d_model]
        self.w_pe = _unwrap(t.wpe).weight  # [n_positions, d_model]
        self.w_u = _unwrap(model.lm_head).weight  # [vocab, d_model] (tied to wte, no bias)

    def _ln(self, x: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.layer_norm(x, (self.d_model,), wb[0], wb[1], self.eps)

    def w_o(self, layer: int) -> torch.Tensor:
        """W_O per head: [head, d_head, d_model] (Conv1D weight is [in, out], in = head-major z)."""
        return self.layers[layer].w_o.view(self.n_heads, self.d_head, self.d_model)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        return F.embedding(tokens, self.w_te) + F.embedding(pos, self.w_pe)[None]  # [batch, pos, d_model]

    def qkv(self, layer: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [batch, pos, d_model] (pre-LN residual) -> q, k, v: [batch, head, pos, d_head]."""
        p = self.layers[layer]
        q, k, v = conv1d(self._ln(x, p.ln1), p.w_qkv, p.b_qkv).split(self.d_model, dim=-1)
        split = lambda t: t.view(*t.shape[:-1], self.n_heads, self.d_head).transpose(1, 2)  # noqa: E731
        return split(q), split(k), split(v)

    def attend(self, layer: int, q, k, v, mask: torch.Tensor) -> torch.Tensor:
        """-> z: [batch, q_pos, head, d_head]. mask: bool [batch, 1, q_pos, k_pos], True = attend."""
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.layers[layer].scaling)
        return z.transpose(1, 2)

    def attn_out(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """z: [..., head, d_head] -> [..., d_model] (c_proj, bias included)."""
        p = self.layers[layer]
        return conv1d(z.reshape(*z.shape[:-2], self.d_model), p.w_o, p.b_o)

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """x: pre-LN residual [..., d_model] -> mlp_out [..., d_model]."""
        p = self.layers[layer]
        return conv1d(self.act(conv1d(self._ln(x, p.ln2), p.w_in, p.b_in)), p.w_out, p.b_out)

    def block(self, layer: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A full block at every position: x [batch, pos, d_model] -> same."""
        x = x + self.attn_out(layer, self.attend(layer, *self.qkv(layer, x), mask))
        return x + self.mlp(layer, x)

    def last_block_at_end(self, x: torch.Tensor, mask: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """The last block where only the end positions are read: keys / values at every
        position, everything else at ``end`` only. x: [batch, pos, d_model] -> [batch, d_model]."""
        layer = self.n_layers - 1
        rows = torch.arange(x.shape[0], device=x.device)
        q, k, v = self.qkv(layer, x)
        q_end = q[rows, :, end].unsqueeze(2)  # [batch, head, 1, d_head]
        m_end = mask[rows, :, end].unsqueeze(2)  # [batch, 1, 1, k_pos]
        z = self.attend(layer, q_end, k, v, m_end)[:, 0]  # [batch, head, d_head]
        x_end = x[rows, end] + self.attn_out(layer, z)
        return x_end + self.mlp(layer, x_end)

    def logit_diff(self, x_end: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        """x_end: [batch, d_model] final residual; direction: [batch, d_model] = W_U[ans] - W_U[dis]."""
        return (self._ln(x_end, self.ln_f) * direction).sum(-1)


def attention_mask_4d(attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch, pos] padding mask -> bool [batch, 1, pos, pos]: causal and key is a real token,
    the mask HF builds for GPT-2. A right-padded query row always sees position 0, never empty."""
    t = attention_mask.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=attention_mask.device).tril()
    return causal[None, None] & attention_mask.bool()[:, None, None, :]


# ----------------------------------------------------------------------------- the clean pass
@dataclass
class CleanRun:
    """Per-layer activations of one pass. resid_pre / resid_mid: [layer][batch, pos, d_model];
    z: [layer][batch, pos, head, d_head]; mlp_out: [layer][batch, pos, d_model]; ld: [batch]."""

    resid_pre: list[torch.Tensor]
    resid_mid: list[torch.Tensor]
    z: list[torch.Tensor]
    mlp_out: list[torch.Tensor]
    ld: torch.Tensor | None


def run_clean(
    view: Gpt2View,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor,
    end_pos: torch.Tensor | None = None,
    direction: torch.Tensor | None = None,
) -> CleanRun:
    """Full forward keeping the residual stream around every attention block."""
    mask = attention_mask_4d(attention_mask)
    x = view.embed(tokens)
    pre, mid, zs, mlps = [], [], [], []
    for layer in range(view.n_layers):
        pre.append(x)
        z = view.attend(layer, *view.qkv(layer, x), mask)  # [batch, pos, head, d_head]
        x = x + view.attn_out(layer, z)
        mid.append(x)
        zs.append(z)
        m = view.mlp(layer, x)
        mlps.append(m)
        x = x + m
    ld = None
    if end_pos is not None and direction is not None:
        rows = torch.arange(x.shape[0], device=x.device)
        ld = view.logit_diff(x[rows, end_pos], direction)
    return CleanRun(pre, mid, zs, mlps, ld)


# ----------------------------------------------------------------------------- ablation values
def replacement(
    clean: torch.Tensor,
    corrupted: torch.Tensor | None,
    ablation: AblationKind,
    corrupted_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """What an ablated activation is replaced by, broadcast to ``clean``'s shape [batch, pos, ...]:
    zero; the per-position mean over the corrupted prompts; or the corrupted prompt's own value.

    The mean at a position is over the corrupted prompts with a real token there
    (``corrupted_mask`` [batch', pos]), accumulated in float64: the definition of
    :mod:`circuitdiff.analysis.ablation`, so both scans replace with the same numbers.
    """
    if ablation == "zero":
        return torch.zeros_like(clean)
    if corrupted is None:
        raise ValueError(f"{ablation} ablation needs the corrupted prompts")
    if ablation == "mean":
        t = clean.shape[1]
        c = corrupted[:, :t].double()
        m = (torch.ones(c.shape[:2], device=c.device) if corrupted_mask is None else corrupted_mask[:, :t])
        m = m.to(c.device, torch.float64).view(*c.shape[:2], *([1] * (c.dim() - 2)))
        mean = (c * m).sum(0) / m.sum(0).clamp(min=1)  # [pos, ...]
        return mean.to(clean.dtype)[None].expand_as(clean)
    if ablation == "resample":
        return corrupted[:, : clean.shape[1]]
    raise ValueError(f"unknown ablation {ablation!r}")


# ----------------------------------------------------------------------------- micro-batching
def free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def rows_per_microbatch(view: Gpt2View, seq_len: int, device: torch.device, itemsize: int) -> int:
    """Rows (sequences) that fit in a quarter of free memory while one block runs. On CPU also
    capped so a micro-batch stays cache-friendly; bigger brings no speed there."""
    per_row = itemsize * seq_len * (8 * view.d_model + 2 * view.d_mlp + 2 * view.n_heads * seq_len)
    rows = max(1, free_memory_bytes(device) // 4 // max(per_row, 1))
    if device.type != "cuda":
        rows = min(rows, max(1, int(os.environ.get("CIRCUITDIFF_SCAN_CPU_TOKENS", "8192")) // seq_len))
    return int(rows)


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    msg = str(e).lower()
    return isinstance(e, (RuntimeError, MemoryError)) and (
        "out of memory" in msg or "can't allocate memory" in msg or isinstance(e, MemoryError)
    )


def run_microbatched(n_rows: int, rows: int, fn: Callable[[slice], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Apply ``fn`` to consecutive row slices of at most ``rows``; on out-of-memory halve ``rows``
    and retry the slice. Returns the concatenated outputs and the size that worked."""
    outs, start = [], 0
    while start < n_rows:
        stop = min(n_rows, start + rows)
        try:
            outs.append(fn(slice(start, stop)))
        except (RuntimeError, MemoryError) as e:
            if not _is_oom(e) or rows == 1:
                raise
            rows = max(1, rows // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        start = stop
    return torch.cat(outs), rows


# ----------------------------------------------------------------------------- the scan
@dataclass
class ScanOutput:
    """components: ids in the order asked; ablated_ld: [component, prompt]; clean_ld: [prompt]."""

    components: list[str]
    clean_ld: torch.Tensor
    ablated_ld: torch.Tensor
    microbatch_rows: int


@torch.no_grad()
def exact_scan(
    model: Any,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor,
    end_pos: torch.Tensor,
    answer: torch.Tensor,
    distractor: torch.Tensor,
    ablation: AblationKind,
    corrupted_tokens: torch.Tensor | None = None,
    corrupted_mask: torch.Tensor | None = None,
    components: Sequence[str] | None = None,
    max_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScanOutput:
    """LD per prompt with each component ablated alone, equal to the naive scan.

    tokens, attention_mask: [batch, pos] right-padded; end_pos, answer, distractor: [batch].
    corrupted_*: [batch', pos'] for mean (any batch') or resample (batch' = batch) ablation.
    """
    view = Gpt2View(gpt2_of(model))
    device = view.w_u.device
    if components is None:
        components = component_ids(view.n_layers, view.n_heads)
    parsed = [parse_component(c) for c in components]
    for c in parsed:
        if c.layer >= view.n_layers or (c.head is not None and c.head >= view.n_heads):
            raise ValueError(f"{c.id} is outside this model ({view.n_layers} layers x {view.n_heads} heads)")

    # causal: nothing after the last end position can reach an answer position
    t = int(end_pos.max()) + 1
    tokens, attention_mask = tokens[:, :t].to(device), attention_mask[:, :t].to(device)
    end_pos = end_pos.to(device)
    direction = view.w_u[answer.to(device)] - view.w_u[distractor.to(device)]  # [batch, d_model]
    clean = run_clean(view, tokens, attention_mask, end_pos, direction)
    corrupt = c_mask = None
    if ablation != "zero":
        if corrupted_tokens is None or corrupted_mask is None:
            raise ValueError(f"{ablation} ablation needs the corrupted prompts")
        ct, c_mask = corrupted_tokens[:, :t].to(device), corrupted_mask[:, :t].to(device)
        corrupt = run_clean(view, ct, c_mask)
        if ablation == "resample" and ct.shape[0] != tokens.shape[0]:
            raise ValueError("resample ablation needs one corrupted prompt per clean prompt")
        if ct.shape[1] < t:
            raise ValueError("corrupted prompts are shorter than the clean ones")

    n = tokens.shape[0]
    mask = attention_mask_4d(attention_mask)  # [batch, 1, t, t]
    rows = max_rows or rows_per_microbatch(view, t, device, view.w_u.element_size())
    out = torch.empty(len(parsed), n, dtype=clean.ld.dtype, device=device)

    by_layer: dict[int, list[int]] = {}
    for i, c in enumerate(parsed):
        by_layer.setdefault(c.layer, []).append(i)
    done = 0
    for layer in sorted(by_layer):
        idx = by_layer[layer]
        heads = [i for i in idx if parsed[i].head is not None]
        mlps = [i for i in idx if parsed[i].head is None]
        if heads:
            z_rep = replacement(clean.z[layer], corrupt.z[layer] if corrupt else None, ablation, c_mask)
            dz = z_rep - clean.z[layer]  # [batch, pos, head, d_head]
            head_of = torch.tensor([parsed[i].head for i in heads], device=device)
            lds, rows = _scan_heads(view, layer, clean, dz, head_of, mask, end_pos, direction, rows)
            out[heads] = lds.view(len(heads), n)
        for i in mlps:
            m_rep = replacement(clean.mlp_out[layer], corrupt.mlp_out[layer] if corrupt else None, ablation, c_mask)
            start = clean.resid_mid[layer] + m_rep  # resid_post with the MLP replaced
            lds, rows = _continue_from(view, layer + 1, start, mask, end_pos, direction, rows)
            out[i] = lds
        done += len(idx)
        if progress is not None:
            progress(done, len(parsed))
    return ScanOutput(list(components), clean.ld, out, rows)


def _scan_heads(view, layer, clean, dz, head_of, mask, end_pos, direction, rows):
    """Every requested head of ``layer`` ablated alone; rows are (head-major) head x prompt."""
    n = dz.shape[0]
    w_o = view.w_o(layer)  # [head, d_head, d_model]
    last = layer == view.n_layers - 1

    def run(sl: slice) -> torch.Tensor:
        r = torch.arange(sl.start, sl.stop, device=dz.device)
        h, b = head_of[r // n], r % n
        if last:  # only the end positions are ever read
            e = end_pos[b]
            delta = torch.einsum("rk,rkd->rd", dz[b, e, h], w_o[h])  # [rows, d_model]
            x = clean.resid_mid[layer][b, e] + delta
            x = x + view.mlp(layer, x)
            return view.logit_diff(x, direction[b])
        delta = torch.einsum("rpk,rkd->rpd", dz[b, :, h], w_o[h])  # [rows, pos, d_model]
        x = clean.resid_mid[layer][b] + delta
        x = x + view.mlp(layer, x)
        return _finish(view, layer + 1, x, mask[b], end_pos[b], direction[b])

    return run_microbatched(len(head_of) * n, rows, run)


def _continue_from(view, layer, start, mask, end_pos, direction, rows):
    """start: resid_pre of ``layer`` [batch, pos, d_model] -> LD per prompt."""

    def run(sl: slice) -> torch.Tensor:
        return _finish(view, layer, start[sl], mask[sl], end_pos[sl], direction[sl])

    return run_microbatched(start.shape[0], rows, run)


def _finish(view, layer, x, mask, end, direction) -> torch.Tensor:
    """Blocks ``layer``.. to the end, then the logit difference. x: [rows, pos, d_model]."""
    rows = torch.arange(x.shape[0], device=x.device)
    if layer == view.n_layers:
        return view.logit_diff(x[rows, end], direction)
    for l in range(layer, view.n_layers - 1):
        x = view.block(l, x, mask)
    return view.logit_diff(view.last_block_at_end(x, mask, end), direction)
