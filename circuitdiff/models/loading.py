"""Resolve a :class:`~circuitdiff.spec.ModelRef` to a loaded :class:`ModelAdapter`.

Three kinds of reference (spec.model_kind): ``zoo:NAME`` (bundled, via circuitdiff.zoo.load),
a local checkpoint directory (config.json + *.safetensors), or a hub id with optional revision.
Safety rules hold on every path: ``trust_remote_code=False`` and ``use_safetensors=True`` (a
pickle checkpoint is refused, never unpickled). Every failure a user can cause becomes a
:class:`ModelLoadError` / :class:`UnknownModelError` with one clear sentence, naming the spec
field the caller passes as ``field`` (``teacher.id`` / ``student.id``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError

from .. import catalogue
from ..errors import CircuitdiffError, ModelLoadError, UnknownModelError
from ..fingerprint import weights_sha256
from ..spec import ModelRef
from ..architectures import family_of_model_type
from .adapter import ModelAdapter
from .placement import MemoryPlan, Workload, available_memory, plan_memory

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was requested but no CUDA GPU is available", field="device",
                             fix="use --device cpu or auto")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, n_params: int | None = None) -> torch.dtype:
    """A torch dtype; ``auto`` needs the model's parameter count (placement.choose_dtype)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        from .placement import choose_dtype

        return DTYPES[choose_dtype("auto", n_params or 0)]
    return DTYPES[dtype]


def state_dict_sha256(model: torch.nn.Module) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor: identifies weights built in memory
    (the zoo's seeded random models), where there is no file to hash."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_model(
    ref: ModelRef | str, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32", *,
    field: str = "model", workload: Workload | None = None,
) -> ModelAdapter:
    """Load one model behind the adapter interface. ``device`` may be ``auto``; ``field`` is the spec
    field the model came from, named by every error (``teacher.id``).

    Before any weight is read, the model's config is planned against the memory the device(s) have
    free (:mod:`circuitdiff.models.placement`, ``workload`` = the prompts the scan will hold): the
    dtype (``auto``: bfloat16 above a size), one device or the layers spread over the visible GPUs,
    or :class:`~circuitdiff.errors.InsufficientMemoryError` at once. ``info["placement"]`` records it."""
    if isinstance(ref, str):
        ref = ModelRef(id=ref)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if isinstance(dtype, torch.dtype):
        dtype = next(k for k, v in DTYPES.items() if v == dtype)
    plans: list[MemoryPlan] = []

    def plan(config: Any) -> MemoryPlan:
        p = plan_memory(config, dtype, workload or Workload(n_prompts=1), available_memory(dev), field=field,
                        model_id=ref.id)
        plans.append(p)
        return p

    hf_model, tokenizer, info = _load_hf(ref, field, plan)
    p = plans[0] if plans else plan(hf_model.config)  # random zoo models: built, then planned
    dt = DTYPES[p.dtype]
    if p.device_map is None:
        hf_model = hf_model.to(device=dev, dtype=dt)
    hf_model = hf_model.eval()
    info = dict(info, dtype=p.dtype, placement=p.to_info())
    return build_adapter(hf_model, tokenizer, info, dev, dt, field=field, spread=p.device_map is not None)


def build_adapter(hf_model: Any, tokenizer: Any, info: dict, device: torch.device, dtype: torch.dtype, *,
                  field: str = "model", spread: bool = False) -> ModelAdapter:
    """Pick the adapter for an architecture: the bridge for decoders it knows, plain hooks for the rest
    and for a model whose weights are spread over several devices (``spread``; the hook adapter
    gathers its captures on the first device)."""
    cfg = hf_model.config
    # Counted before the bridge wraps the model: it adds split q/k/v copies of the fused weights.
    n_params = sum(p.numel() for p in hf_model.parameters())
    info = dict(info, architecture=type(hf_model).__name__, n_params=n_params)
    if getattr(cfg, "is_encoder_decoder", False):
        raise ModelLoadError(f"{info['id']}: encoder-decoder models ({cfg.model_type}) are not supported",
                             field=field, fix="compare decoder-only (GPT-2, Llama) or masked (BERT) models")
    if spread or family_of_model_type(cfg.model_type) == "masked" or not bridge_supports(cfg):
        # BERT also boots in the bridge, and both adapters give the same numbers on it
        # (tests/engine/test_hooks_adapter.py); the masked-LM family goes through hooks so that a BERT
        # teacher and its DistilBERT student (which the bridge refuses) share the same hook points.
        return _hooks_adapter(hf_model, tokenizer, info, device, dtype, field)
    from .bridge import BridgeAdapter, boot_bridge

    return BridgeAdapter(boot_bridge(hf_model, tokenizer, info["id"], device, dtype), tokenizer, info, device, dtype)


def bridge_supports(config: Any) -> bool:
    """Whether transformer_lens ``TransformerBridge`` has an adapter for this config's architecture
    (its own lookup, which raises ValueError for an architecture it lacks)."""
    from transformer_lens.model_bridge.sources._hf_format import determine_architecture_from_hf_config

    try:
        determine_architecture_from_hf_config(config)
    except ValueError:
        return False
    return True


def _hooks_adapter(hf_model: Any, tokenizer: Any, info: dict, device: torch.device, dtype: torch.dtype,
                   field: str) -> ModelAdapter:
    from .hooks import HooksAdapter, supports

    if not supports(hf_model):
        raise ModelLoadError(
            f"{info['id']}: architecture {info['architecture']} is supported neither by the transformer_lens "
            "bridge nor by the forward-hook adapter", field=field,
            fix="use a GPT-2, BERT or DistilBERT checkpoint",
        )
    return HooksAdapter(hf_model, tokenizer, info, device, dtype)


Plan = Callable[[Any], MemoryPlan]


def _weights_kwargs(p: MemoryPlan) -> dict:
    """from_pretrained arguments for a plan: the dtype, and the device map when weights are spread
    (transformers places them through ``accelerate``, imported only then)."""
    kw: dict[str, Any] = {"dtype": DTYPES[p.dtype]}
    if p.device_map is not None:
        kw["device_map"] = p.device_map
    return kw


def _load_hf(ref: ModelRef, field: str, plan: Plan) -> tuple[Any, Any, dict]:
    kind = ref.kind
    if kind == "zoo":
        return _load_zoo(ref.id, field, plan)
    if kind == "local":
        return _load_local(ref.id, field, plan)
    return _load_hub(ref.id, ref.revision, field, plan)


def _load_zoo(model_id: str, field: str, plan: Plan):
    from ..zoo.load import load_zoo

    name = model_id.removeprefix("zoo:")
    try:
        entry = catalogue.zoo_model(name)
    except KeyError:
        raise UnknownModelError(f"unknown zoo model {name!r}", field=field,
                                fix="list the zoo with `circuitdiff models` or GET /v1/models") from None
    if entry.trained and (entry.path / "config.json").is_file():
        from transformers import AutoConfig

        plan(AutoConfig.from_pretrained(entry.path))  # before the weights, as for every model
    try:
        model, tok = load_zoo(name)
    except CircuitdiffError as e:
        e.field = field
        raise
    except (OSError, FileNotFoundError) as e:
        raise ModelLoadError(f"{model_id}: the bundled model could not be loaded ({e})", field=field,
                             fix="retrain the zoo with `make zoo`") from None
    sha = weights_sha256(entry.path) if entry.trained else state_dict_sha256(model)
    return model, tok, {"id": model_id, "kind": "zoo", "revision": None, "sha256": sha}


def _load_local(model_id: str, field: str, plan: Plan):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    path = Path(model_id).expanduser()
    if not path.exists():
        raise ModelLoadError(f"{model_id}: no such directory", field=field)
    if not path.is_dir():
        raise ModelLoadError(f"{model_id}: not a directory (a model checkpoint is a directory)", field=field)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{model_id}: not a model checkpoint (no config.json)", field=field)
    if not any(p.name.endswith(".safetensors") for p in path.iterdir()):
        pickles = [p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        extra = f" ({', '.join(pickles)} found; pickle weights are never loaded)" if pickles else ""
        raise ModelLoadError(f"{model_id}: no .safetensors weight files{extra}", field=field,
                             fix="save the model with save_pretrained(..., safe_serialization=True)")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except _CHECKPOINT_ERRORS as e:
        raise ModelLoadError(f"{model_id}: could not load the checkpoint ({_first_line(e)})", field=field) from None
    weights = _weights_kwargs(plan(config))
    try:
        auto = AutoModelForMaskedLM if family_of_model_type(config.model_type) == "masked" else AutoModelForCausalLM
        model = auto.from_pretrained(
            path, config=config, use_safetensors=True, trust_remote_code=False, attn_implementation="eager", **weights
        )
    except _CHECKPOINT_ERRORS as e:
        raise ModelLoadError(f"{model_id}: could not load the checkpoint ({_first_line(e)})", field=field) from None
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{model_id}: no usable tokenizer in the directory ({_first_line(e)})", field=field) from None
    sha = weights_sha256(path)
    return model.eval(), tok, {"id": str(path.resolve()), "kind": "local", "revision": None, "sha256": sha}


def _load_hub(model_id: str, revision: str | None, field: str, plan: Plan):
    """The real hub path (download, pinned revision). Build machines have no hub access, so here it
    fails with a clear ModelLoadError; on a connected host it records the resolved commit."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(model_id, revision=revision, trust_remote_code=False)
    except OSError as e:
        msg = _first_line(e)
        if "not a valid model identifier" in msg or "404" in msg or "Repository Not Found" in msg:
            raise UnknownModelError(f"{model_id}: no such model on the Hugging Face hub", field=field) from None
        from ..catalogue import ZOO

        if model_id in ZOO:  # `gpt-teacher` meant the bundled model, not a hub repo
            raise ModelLoadError(f"{model_id}: could not fetch from the Hugging Face hub (offline or unreachable); "
                                 f"did you mean zoo:{model_id}?", field=field,
                                 fix=f"use zoo:{model_id} (the bundled model of that name)") from None
        raise ModelLoadError(
            f"{model_id}: could not fetch from the Hugging Face hub (offline or unreachable); "
            "use zoo:NAME or a local checkpoint directory",
            field=field,
        ) from None
    except ValueError as e:
        raise ModelLoadError(f"{model_id}: unsupported model config ({_first_line(e)})", field=field) from None
    auto = AutoModelForMaskedLM if family_of_model_type(config.model_type) == "masked" else AutoModelForCausalLM
    weights = _weights_kwargs(plan(config))  # before any weight is downloaded
    try:
        model = auto.from_pretrained(
            model_id, revision=revision, config=config, use_safetensors=True, trust_remote_code=False,
            attn_implementation="eager", **weights,
        )
        tok = AutoTokenizer.from_pretrained(model_id, revision=revision, trust_remote_code=False)
    except _CHECKPOINT_ERRORS as e:
        raise ModelLoadError(f"{model_id}: could not load weights/tokenizer ({_first_line(e)})", field=field) from None
    resolved = getattr(config, "_commit_hash", None) or revision
    return model.eval(), tok, {"id": model_id, "kind": "hub", "revision": resolved, "sha256": None}


# What a truncated or corrupt checkpoint raises: a bad safetensors header (SafetensorError), weights
# whose shapes disagree with config.json (RuntimeError), unreadable or malformed files.
_CHECKPOINT_ERRORS = (OSError, ValueError, KeyError, RuntimeError, SafetensorError)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
