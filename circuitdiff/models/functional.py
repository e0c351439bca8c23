"""A functional view of a model's layers: the block arithmetic as plain functions of tensors.

The exact scan (circuitdiff.scan.exact) and attribution patching (circuitdiff.scan.attribution)
re-run *parts* of a model: the blocks above an ablated layer, the last block at the answer position
only, the attention output of one head. They need the model as functions, not as one forward
pass. A :class:`LayerStack` is that view for one architecture; an adapter hands it out
(:meth:`circuitdiff.models.adapter.ModelAdapter.functional`), so the scans never reach into module
internals. A model type's record (:mod:`circuitdiff.architectures`) names its class; a new layout
plugs in here, once.

Every implementation computes exactly what the model's own forward computes (same modules'
weights, same operations), for pre-LN decoders whose block is
``x_mid = x + attn_out(attention(x)); x_out = x_mid + mlp(x_mid)``. tests/engine/test_fast_scan.py checks
the view against the HF forward with hooks.

Shapes: x / residual ``[batch, pos, d_model]``; z ``[batch, pos, head, d_head]`` (the per-head
attention output before W_O, where a head is ablated); mask ``bool [batch, 1, q_pos, k_pos]``
(True = attend).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from ..architectures import ARCHITECTURES, architecture
from ..errors import UnsupportedArchitectureError


def unwrap(module: Any) -> Any:
    """The HF module under transformer_lens bridge wrappers. The bridge replaces HF submodules in
    place with hooked components that keep the original as ``original_component``; the view reads
    raw weights so that no hook runs and the arithmetic is the plain HF one."""
    while getattr(module, "original_component", None) is not None:
        module = module.original_component
    return module


def attention_mask_4d(attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch, pos] padding mask -> bool [batch, 1, pos, pos]: causal and key is a real token,
    the mask HF builds for decoders. A right-padded query row always sees position 0, never empty."""
    t = attention_mask.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=attention_mask.device).tril()
    return causal[None, None] & attention_mask.bool()[:, None, None, :]


GRADIENT_RULES = ("norm", "act", "attn", "half")
"""Backward rules a view can switch on (:meth:`LayerStack.gradient_rules`). Each leaves every forward
value unchanged and replaces one operation's local gradient by the relevance-propagation rule of
RelP (Jafari et al. 2025, arXiv 2508.21258) / AttnLRP (Achtibat et al. 2024):

- ``norm``: LayerNorm / RMSNorm with its scale (1/std, 1/rms) held constant (the identity rule);
- ``act``: an elementwise activation f passes gradient f(x)/x (the secant from 0 to x) instead of f'(x);
- ``attn``: the attention pattern held constant: gradient reaches z through the values only;
- ``half``: a product of two activations (SwiGLU's act(gate) * up) sends half the gradient to each side.
"""


def _secant(act: Any, x: torch.Tensor) -> torch.Tensor:
    """f(x) with gradient f(x)/x (the ``act`` rule); near x = 0 the ratio is f'(0) = 1/2 for the GELU
    and SiLU families the stacks use."""
    y = act(x)
    ratio = torch.where(x.abs() > 1e-6, y / torch.where(x.abs() > 1e-6, x, torch.ones_like(x)), 0.5)
    return y.detach() + (x - x.detach()) * ratio.detach()


def _half_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a * b with half the gradient to each factor (the ``half`` rule)."""
    return 0.5 * (a * b.detach() + a.detach() * b)


def _fixed_pattern_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                             scale: float) -> torch.Tensor:
    """softmax(q k^T scale, masked) v with the pattern detached (the ``attn`` rule); the same values as
    scaled_dot_product_attention up to float rounding. q [b, h, q, d], k/v [b, h, k, d]."""
    scores = (q @ k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores.float(), dim=-1).to(v.dtype).detach() @ v


class LayerStack(ABC):
    """One causal pre-LN decoder as functions. Subclasses set the sizes and implement the
    abstract methods; :meth:`block`, :meth:`last_block_at_end`, :meth:`logit_diff` and :meth:`logits` follow."""

    rules: frozenset[str] = frozenset()
    """The backward rules in force (:data:`GRADIENT_RULES`); empty: plain autograd."""

    @contextmanager
    def gradient_rules(self, rules: "frozenset[str] | set[str] | tuple[str, ...]") -> Iterator["LayerStack"]:
        """Within the block, differentiate with ``rules`` (:data:`GRADIENT_RULES`); forward values unchanged."""
        unknown = set(rules) - set(GRADIENT_RULES)
        if unknown:
            raise ValueError(f"unknown gradient rules {sorted(unknown)}; known: {', '.join(GRADIENT_RULES)}")
        before, self.rules = self.rules, frozenset(rules)
        try:
            yield self
        finally:
            self.rules = before

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return _secant(self.act, x) if "act" in self.rules else self.act(x)

    def _attend(self, q, k, v, mask, scale) -> torch.Tensor:
        if "attn" in self.rules:
            return _fixed_pattern_attention(q, k, v, mask, scale)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)

    n_layers: int
    n_heads: int  # query heads: the unit a head ablation addresses
    d_head: int
    d_model: int
    d_mlp: int
    w_u: torch.Tensor  # [vocab, d_model] the unembedding (logits = final_norm(x) @ w_u.T, no bias)

    @property
    def device(self) -> torch.device:
        """Where the logits are computed (the unembedding's device)."""
        return self.w_u.device

    @property
    def dtype(self) -> torch.dtype:
        return self.w_u.dtype

    @abstractmethod
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, pos] -> residual stream before layer 0 [batch, pos, d_model]."""

    @abstractmethod
    def attention(self, layer: int, x: torch.Tensor, mask: torch.Tensor, end: torch.Tensor | None = None
                  ) -> torch.Tensor:
        """Pre-LN residual x [batch, pos, d_model] -> z [batch, pos, head, d_head]; with ``end``
        [batch], queries only at those positions (keys and values everywhere): z [batch, head, d_head]."""

    @abstractmethod
    def attn_out(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """z [..., head, d_head] -> the attention block's output [..., d_model] (W_O, bias included)."""

    @abstractmethod
    def w_o(self, layer: int) -> torch.Tensor:
        """W_O per head: [head, d_head, d_model] (``attn_out`` is linear in z with these weights)."""

    @abstractmethod
    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Pre-LN residual x [..., d_model] -> the MLP's output [..., d_model]."""

    @abstractmethod
    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The norm before the unembedding, x [..., d_model] -> [..., d_model]."""

    @abstractmethod
    def unembed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Unembedding rows W_U[token_ids]: [..., d_model] (logit of a token = row · final_norm(x))."""

    # ----------------------------------------------------------------------- derived
    def block(self, layer: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A full block at every position: x [batch, pos, d_model] -> same."""
        x = x + self.attn_out(layer, self.attention(layer, x, mask))
        return x + self.mlp(layer, x)

    def last_block_at_end(self, x: torch.Tensor, mask: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """The last block where only the end positions are read: x [batch, pos, d_model] -> the
        final residual at ``end`` [batch, d_model]."""
        layer = self.n_layers - 1
        rows = torch.arange(x.shape[0], device=x.device)
        z = self.attention(layer, x, mask, end)  # [batch, head, d_head]
        x_end = x[rows, end] + self.attn_out(layer, z)
        return x_end + self.mlp(layer, x_end)

    def logit_diff(self, x_end: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        """x_end: [batch, d_model] final residual; direction: [batch, d_model] = W_U[ans] - W_U[dis].
        Returns float32 [batch] whatever the model's dtype: in bfloat16 the product's sum over d_model
        would round each LD to ~3 significant digits, and influences are differences of LDs."""
        return (self.final_norm(x_end).float() * direction.float()).sum(-1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary logits of final residuals x [..., d_model] -> [..., vocab] (the metrics that
        read a whole next-token distribution, circuitdiff.scan.readout)."""
        return self.final_norm(x) @ self.w_u.T


TANH_GELUS = ("gelu_new", "gelu_fast", "gelu_pytorch_tanh")
"""HF activation names that all compute 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): the view runs
them as torch's one fused kernel (``F.gelu(approximate="tanh")``, equal to float rounding, 2.4e-7 at
most) instead of HF's six elementwise operations, which took ~20% of the exact scan's time on
GPT-2-small shapes (#28 §2: the gap between the scan's FLOP rate and plain matmuls)."""


def activation(name: str) -> Any:
    """The elementwise activation an HF config names, fused where :data:`TANH_GELUS` allows."""
    from transformers.activations import ACT2FN

    if name in TANH_GELUS:
        return lambda x: F.gelu(x, approximate="tanh")
    return ACT2FN[name]


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """HF ``Conv1D`` (a linear layer with weight [in, out]), the same addmm it runs."""
    return torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight).view(*x.shape[:-1], weight.shape[1])


class Gpt2Stack(LayerStack):
    """``GPT2LMHeadModel``: LayerNorm, fused c_attn (Conv1D), learned positions, GELU MLP, tied W_U."""

    def __init__(self, model: Any):
        cfg = model.config
        if getattr(cfg, "add_cross_attention", False) or getattr(cfg, "reorder_and_upcast_attn", False):
            raise UnsupportedArchitectureError("GPT-2 variants with cross-attention or reordered attention have "
                                               "no functional view")
        t = unwrap(model.transformer)
        self.n_layers = int(cfg.n_layer)
        self.n_heads = int(cfg.n_head)
        self.d_model = int(cfg.n_embd)
        self.d_head = self.d_model // self.n_heads
        self.d_mlp = int(cfg.n_inner or 4 * self.d_model)
        self.eps = float(cfg.layer_norm_epsilon)
        self.act = activation(cfg.activation_function)
        wb = lambda m: (unwrap(m).weight, unwrap(m).bias)  # noqa: E731
        self.layers = []
        for i in range(self.n_layers):
            blk = unwrap(t.h[i])
            attn, mlp = unwrap(blk.attn), unwrap(blk.mlp)
            scaling = getattr(attn, "scaling", None)
            if scaling is None:  # older transformers: derive it the way GPT2Attention does
                scaling = (self.d_head**-0.5 if cfg.scale_attn_weights else 1.0) / (
                    float(i + 1) if cfg.scale_attn_by_inverse_layer_idx else 1.0
                )
            self.layers.append({
                "ln1": wb(blk.ln_1), "qkv": wb(attn.c_attn), "o": wb(attn.c_proj), "ln2": wb(blk.ln_2),
                "fc": wb(mlp.c_fc), "proj": wb(mlp.c_proj), "scaling": float(scaling),
            })
        self.ln_f = wb(t.ln_f)
        self.w_te = unwrap(t.wte).weight  # [vocab, d_model]
        self.w_pe = unwrap(t.wpe).weight  # [n_positions, d_model]
        self.w_u = unwrap(model.lm_head).weight  # [vocab, d_model] (tied to wte, no bias)

    def _ln(self, x: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if "norm" in self.rules:  # the scale held constant (GRADIENT_RULES)
            centred = x - x.mean(-1, keepdim=True)
            scale = torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + self.eps).detach()
            return centred * scale * wb[0] + wb[1]
        return F.layer_norm(x, (self.d_model,), wb[0], wb[1], self.eps)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        return F.embedding(tokens, self.w_te) + F.embedding(pos, self.w_pe)[None]  # [batch, pos, d_model]

    def attention(self, layer, x, mask, end=None):
        p = self.layers[layer]
        q, k, v = conv1d(self._ln(x, p["ln1"]), *p["qkv"]).split(self.d_model, dim=-1)
        split = lambda t: t.view(*t.shape[:-1], self.n_heads, self.d_head).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)  # [batch, head, pos, d_head]
        if end is not None:
            rows = torch.arange(x.shape[0], device=x.device)
            q = q[rows, :, end].unsqueeze(2)  # [batch, head, 1, d_head]
            mask = mask[rows, :, end].unsqueeze(2)  # [batch, 1, 1, k_pos]
        z = self._attend(q, k, v, mask, p["scaling"]).transpose(1, 2)
        return z[:, 0] if end is not None else z  # [batch, head, d_head] | [batch, pos, head, d_head]

    def attn_out(self, layer, z):
        return conv1d(z.reshape(*z.shape[:-2], self.d_model), *self.layers[layer]["o"])

    def w_o(self, layer):
        # Conv1D weight is [in, out] with in = the head-major z
        return self.layers[layer]["o"][0].view(self.n_heads, self.d_head, self.d_model)

    def mlp(self, layer, x):
        p = self.layers[layer]
        return conv1d(self._act(conv1d(self._ln(x, p["ln2"]), *p["fc"])), *p["proj"])

    def final_norm(self, x):
        return self._ln(x, self.ln_f)

    def unembed(self, token_ids):
        return self.w_u[token_ids]


class LlamaStack(LayerStack):
    """``LlamaForCausalLM`` and the models sharing its layout (Mistral, Qwen2): RMSNorm, separate
    q/k/v/o linears with grouped-query attention (``n_kv_heads`` key/value heads, each shared by
    ``n_heads / n_kv_heads`` consecutive query heads), rotary position embeddings from the model's
    own rotary module (so Llama 3's scaled RoPE is the model's), a SwiGLU MLP
    ``down(act(gate(x)) * up(x))``, an untied or tied W_U.

    ``n_heads`` counts *query* heads: z is the o_proj input split into query heads, so ablating
    head h changes only its own slice even though it shares keys and values with its group.

    Multi-device: with weights placed over several devices (``device_map``), every method moves
    its input to the layer's device and returns its output on the input's device, so the scans'
    residual arithmetic stays on one device (:attr:`device`, where the unembedding lives) and
    activations and influences are gathered there.
    """

    def __init__(self, model: Any):
        cfg = model.config
        # Mistral / Qwen2 sliding windows equal full causal attention on sequences no longer than the
        # window; attention() refuses longer ones.
        use_window = getattr(cfg, "use_sliding_window", cfg.model_type == "mistral")
        self.window = int(cfg.sliding_window) if use_window and getattr(cfg, "sliding_window", None) else None
        base = unwrap(model.model)
        self.n_layers = len(base.layers)
        self.n_heads = int(cfg.num_attention_heads)
        self.n_kv_heads = int(getattr(cfg, "num_key_value_heads", None) or self.n_heads)
        self.d_model = int(cfg.hidden_size)
        self.d_head = int(getattr(cfg, "head_dim", None) or self.d_model // self.n_heads)
        self.d_mlp = int(cfg.intermediate_size)
        self.act = activation(cfg.hidden_act)
        self.rotary = unwrap(base.rotary_emb)
        lin = lambda m: (unwrap(m).weight, unwrap(m).bias)  # noqa: E731
        norm = lambda m: (unwrap(m).weight, float(getattr(unwrap(m), "variance_epsilon", cfg.rms_norm_eps)))  # noqa: E731
        self.layers = []
        for i in range(self.n_layers):
            blk = unwrap(base.layers[i])
            attn, mlp = unwrap(blk.self_attn), unwrap(blk.mlp)
            self.layers.append({
                "ln1": norm(blk.input_layernorm), "q": lin(attn.q_proj), "k": lin(attn.k_proj),
                "v": lin(attn.v_proj), "o": lin(attn.o_proj), "ln2": norm(blk.post_attention_layernorm),
                "gate": lin(mlp.gate_proj), "up": lin(mlp.up_proj), "down": lin(mlp.down_proj),
                "scaling": float(getattr(attn, "scaling", self.d_head**-0.5)),
            })
        self.norm = norm(base.norm)
        self.w_e = unwrap(base.embed_tokens).weight  # [vocab, d_model]
        self.w_u = unwrap(model.lm_head).weight  # [vocab, d_model]

    def layer_device(self, layer: int) -> torch.device:
        return self.layers[layer]["q"][0].device

    def _rms(self, x: torch.Tensor, we: tuple[torch.Tensor, float]) -> torch.Tensor:
        """LlamaRMSNorm: normalised in float32, cast back, then scaled (the same order of operations)."""
        dtype = x.dtype
        h = x.float()
        scale = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + we[1])
        h = h * (scale.detach() if "norm" in self.rules else scale)  # GRADIENT_RULES
        return we[0] * h.to(dtype)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.embedding(tokens.to(self.w_e.device), self.w_e).to(self.device)  # [batch, pos, d_model]

    def attention(self, layer, x, mask, end=None):
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        p, home = self.layers[layer], x.device
        dev = self.layer_device(layer)
        x, mask = x.to(dev), mask.to(dev)
        b, t = x.shape[:2]
        if self.window is not None and t > self.window:
            raise UnsupportedArchitectureError(f"sequences of {t} tokens exceed the sliding window ({self.window})")
        h = self._rms(x, p["ln1"])
        heads = lambda w, n: F.linear(h, *w).view(b, t, n, self.d_head).transpose(1, 2)  # noqa: E731
        q, k, v = heads(p["q"], self.n_heads), heads(p["k"], self.n_kv_heads), heads(p["v"], self.n_kv_heads)
        # q: [batch, head, pos, d_head]; k, v: [batch, kv_head, pos, d_head]
        positions = torch.arange(t, device=dev)[None]  # right-padded: position = index, as HF's default
        cos, sin = self.rotary(x, positions)  # [1, pos, d_head]
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        group = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # [batch, head, pos, d_head]
        if end is not None:
            rows = torch.arange(b, device=dev)
            end = end.to(dev)
            q = q[rows, :, end].unsqueeze(2)  # [batch, head, 1, d_head]
            mask = mask[rows, :, end].unsqueeze(2)  # [batch, 1, 1, k_pos]
        z = self._attend(q, k, v, mask, p["scaling"]).transpose(1, 2)
        z = z[:, 0] if end is not None else z  # [batch, head, d_head] | [batch, pos, head, d_head]
        return z.to(home)

    def attn_out(self, layer, z):
        w = self.layers[layer]["o"]
        return F.linear(z.to(w[0].device).reshape(*z.shape[:-2], self.n_heads * self.d_head), *w).to(z.device)

    def w_o(self, layer):
        # o_proj weight is [d_model, head * d_head] with the input head-major
        w = self.layers[layer]["o"][0]
        return w.T.reshape(self.n_heads, self.d_head, self.d_model).to(self.device)

    def mlp(self, layer, x):
        p, home = self.layers[layer], x.device
        h = self._rms(x.to(self.layer_device(layer)), p["ln2"])
        gate, up = self._act(F.linear(h, *p["gate"])), F.linear(h, *p["up"])
        inner = _half_product(gate, up) if "half" in self.rules else gate * up
        return F.linear(inner, *p["down"]).to(home)

    def final_norm(self, x):
        return self._rms(x.to(self.norm[0].device), self.norm).to(x.device)

    def unembed(self, token_ids):
        return self.w_u[token_ids.to(self.w_u.device)]


STACKS: dict[str, type[LayerStack]] = {cls.__name__: cls for cls in (Gpt2Stack, LlamaStack)}
"""The LayerStack classes by name, as the architecture records' ``stack`` names them."""


def functional_view(model: Any) -> LayerStack:
    """The :class:`LayerStack` of an HF model, the class its model type's record names
    (circuitdiff.architectures); raises :class:`UnsupportedArchitectureError` where there is none."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    arch = architecture(model_type)
    if arch is None or arch.stack is None:
        covered = [t for t, a in ARCHITECTURES.items() if a.stack is not None]
        raise UnsupportedArchitectureError(
            f"no functional view of {type(model).__name__} (model_type {model_type!r}); "
            f"covered: {', '.join(covered)}")
    return STACKS[arch.stack](model)

