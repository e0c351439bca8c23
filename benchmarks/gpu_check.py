"""A GPU check anyone with one NVIDIA GPU can run in one go (issue #28 §3).

On the build machine (network to the package index), once:

    make gpu-wheels        # the project's runtime dependencies a CUDA PyTorch image lacks, as wheels, in gpu-wheels/

On the GPU machine (torch installed, no internet, no transformer_lens), from the repository root:

    make gpu-check         # python3 benchmarks/gpu_check.py run --device cuda

``run`` installs what is missing from ``gpu-wheels/`` into a temporary directory (never the
machine's own environment; a distribution already installed is left as it is), then prints, in
one process tree, well under 8 minutes on an H100:

1. ``exact == naive`` for the zoo GPT and Llama pairs on the device, float32 and bfloat16 (max
   |ΔI| over the clean LD scale), and the bfloat16 precision contract against float32
   (circuitdiff.scan.precision);
2. ``benchmarks/scan.py`` on the GPT-2-small-shaped random pair at 100 prompts: naive, exact,
   attribution and screened times, their ratios and each as a fraction of the GPU's measured matmul
   rate in the same process;
3. ``benchmarks/llama_scale.py``: the Llama-3.1-8B-shaped teacher (``--layers`` real-width layers)
   through the memory plan, the exact and screened scans in bfloat16, with peak GPU memory;
4. the real stack (``python -m launcher``: embedded Redis, one worker, beat, API) and a
   ``POST /v1/comparisons`` of the zoo pair with ``device`` set to the device, polled to its result.

``--device cpu --quick`` runs every step at smoke size on a CPU (tests/system/test_gpu_check.py runs
it, so the script cannot rot). Each step prints ``== step N: ... ok|FAILED (s)``; the exit status
is 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WHEELS = REPO / "gpu-wheels"
IMAGE_PACKAGES = Path(__file__).resolve().parent / "gpu_image_packages.txt"
NEVER_CARRIED = re.compile(r"^(torch|triton|nvidia-.*|circuitdiff)$")  # the GPU machine's own CUDA stack; the repo itself


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ----------------------------------------------------------------------------- wheels (build machine)
def runtime_closure(root: str = "circuitdiff") -> dict[str, str]:
    """Every distribution the installed project needs at run time (its requirements, recursively,
    without extras), name -> installed version, from this environment's metadata."""
    from packaging.requirements import Requirement

    seen: dict[str, str] = {}

    def walk(name: str) -> None:
        key = canonical(name)
        if key in seen:
            return
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            return
        seen[key] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                walk(req.name)

    walk(root)
    return seen


def image_packages(path: Path = IMAGE_PACKAGES) -> set[str]:
    """Distributions the target CUDA image already holds (one name per line, ``#`` comments)."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(canonical(line))
    return names


def to_carry(closure: dict[str, str], have: set[str]) -> dict[str, str]:
    return {n: v for n, v in sorted(closure.items()) if not NEVER_CARRIED.match(n) and n not in have}


def wheels(args) -> int:
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    need = to_carry(runtime_closure(), image_packages(Path(args.have)))
    plat = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                                        "manylinux1_x86_64", "manylinux_2_5_x86_64")]
    for name, version in need.items():
        spec = f"{name}=={version}"
        got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                              f"--python-version={args.python_version}", "--implementation=cp", *plat, "-d", str(dest),
                              spec], capture_output=True, text=True)
        if got.returncode != 0:  # an sdist only (pure Python in practice): build its wheel here
            built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), spec],
                                   capture_output=True, text=True)
            if built.returncode != 0:
                print(f"error: no wheel for {spec}: {got.stderr.strip()[-300:]}", file=sys.stderr)
                return 1
        print(f"  {spec}")
    size = sum(f.stat().st_size for f in dest.glob("*.whl"))
    print(f"{len(need)} wheels for Python {args.python_version} in {dest} ({size / 2**20:.1f} MiB); "
          f"not carried (the image has them): see {Path(args.have).name}")
    return 0


# ----------------------------------------------------------------------------- install (GPU machine)
def installed(name: str) -> bool:
    try:
        md.distribution(name)
        return True
    except md.PackageNotFoundError:
        return False


def install_missing(folder: Path, target: Path) -> list[str]:
    """pip-install (no index, no dependencies) every wheel in ``folder`` whose distribution this
    Python lacks, into ``target``; returns what it installed."""
    todo = [w for w in sorted(folder.glob("*.whl")) if not installed(w.name.split("-")[0])]
    if todo:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(target), *map(str, todo)], check=True)
    return [w.name for w in todo]


# ----------------------------------------------------------------------------- the checks
def step(n: int, title: str):
    def wrap(fn):
        def run(*a, **k) -> bool:
            print(f"\n== step {n}: {title}", flush=True)
            t0 = time.perf_counter()
            try:
                ok = fn(*a, **k)
            except Exception as exc:  # noqa: BLE001 - a failed step is reported and the others still run
                print(f"error: {type(exc).__name__}: {exc}", flush=True)
                ok = False
            print(f"== step {n}: {'ok' if ok else 'FAILED'} ({time.perf_counter() - t0:.1f} s)", flush=True)
            return ok
        return run
    return wrap


@step(1, "exact == naive and the bfloat16 contract on the zoo GPT and Llama pairs")
def exact_equals_naive(device: str, prompts: int) -> bool:
    from circuitdiff.catalogue import task_items
    from circuitdiff.models.loading import load_model
    from circuitdiff.scan import scan
    from circuitdiff.scan.precision import precision_figures
    from circuitdiff.tasks.dataset import build_task_data

    tol = {"float32": 1e-4, "bfloat16": 2e-2}  # exact vs naive in the same dtype, relative to the LD scale
    ok = True
    for model_id in ("zoo:gpt-teacher", "zoo:gpt-student", "zoo:llama-teacher", "zoo:llama-student"):
        exact = {}
        for dtype in ("float32", "bfloat16"):
            adapter = load_model(model_id, device=device, dtype=dtype)
            tok = adapter.tokenizer
            view = build_task_data(task_items("ioi", {}, prompts, seed=0), {"teacher": tok, "student": tok},
                                   name="ioi").view("teacher")
            ex = scan(adapter, view, "mean", method="exact")
            nv = scan(adapter, view, "mean", method="naive")
            scale = float(ex.clean_ld.abs().mean())
            a, b = ex.influences(), nv.influences()
            rel = max(abs(a[c] - b[c]) for c in a) / scale
            good = rel <= tol[dtype]
            ok &= good
            print(f"{model_id} {dtype}: exact vs naive max |dI| / LD scale {rel:.2e} "
                  f"({'<=' if good else '>'} {tol[dtype]:g})", flush=True)
            exact[dtype] = (ex, scale)
        (ref, scale), (low, _) = exact["float32"], exact["bfloat16"]
        f = precision_figures(ref.influences(), low.influences(), scale)
        ok &= f["meets"]
        print(f"{model_id} bf16 contract: max |dI|/scale {f['max_rel']:.2e}, spearman {f['spearman']:.4f}, "
              f"top-{f['top_k']} identical {f['top_k_identical']} (up to ties {f['top_k_up_to_ties']}): "
              f"{'meets' if f['meets'] else 'BREAKS'} the contract", flush=True)
    return ok


def _script(argv: list[str], timeout: float) -> bool:
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, timeout=timeout, env=os.environ.copy())
    return proc.returncode == 0


@step(2, "scan methods on the GPT-2-small-shaped pair: times, ratios, fraction of the matmul rate")
def scan_benchmark(device: str, quick: bool, timeout: float) -> bool:
    argv = ["benchmarks/scan.py", "--device", device, "--only", "naive,exact,attribution,screened"]
    if quick:  # the zoo pair, float32, a sample of the naive scan: a smoke run of every figure
        argv += ["--quick", "--prompts", "8", "--teacher", "zoo:gpt-teacher", "--student", "zoo:gpt-student", "--dtypes", "float32",
                 "--naive-components", "4"]
    return _script(argv, timeout)


@step(3, "the Llama-3.1-8B-shaped teacher through the memory plan: exact and screened in bfloat16")
def llama_scale(device: str, quick: bool, layers: int, timeout: float) -> bool:
    argv = ["benchmarks/llama_scale.py", "--device", device, "--layers", str(layers), "--screened", "--teacher-only"]
    if quick:
        argv += ["--shrink", "32", "--prompts", "4", "--seq", "16"]
    return _script(argv, timeout)


@step(4, "the real stack: POST /v1/comparisons of the zoo pair on the device, polled to its result")
def through_the_stack(device: str, prompts: int, timeout: float) -> bool:
    import httpx

    from launcher.redis_server import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as data:
        env = {**os.environ, "CIRCUITDIFF_DATA_DIR": data, "CIRCUITDIFF_WORKERS": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("REDIS_URL", None)  # the stack's own embedded Redis
        env.pop("CIRCUITDIFF_API_KEYS", None)
        log = open(Path(data) / "stack.log", "w")
        stack = subprocess.Popen([sys.executable, "-m", "launcher", "--port", str(port)], cwd=REPO, env=env,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if stack.poll() is not None:
                    raise RuntimeError(f"the stack exited with {stack.returncode}")
                time.sleep(0.5)
            else:
                raise RuntimeError("the stack did not become ready")
            spec = {"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi", "n_prompts": prompts,
                    "device": device}
            r = httpx.post(f"{base}/v1/comparisons", json=spec, timeout=30)
            r.raise_for_status()
            job = r.json()
            print(f"submitted {job['id']} ({json.dumps(spec)})", flush=True)
            while time.monotonic() < deadline:
                st = httpx.get(f"{base}/v1/comparisons/{job['id']}", timeout=10).json()
                if st["status"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(1)
            print(f"status {st['status']}", flush=True)
            if st["status"] != "succeeded":
                print(json.dumps(st.get("error"), indent=1))
                return False
            res = httpx.get(f"{base}/v1/comparisons/{job['id']}/result", timeout=30).json()
            a = res["alignment"]
            print(f"alignment {a['score']:.4f} {a.get('ci95')}, verdict {a.get('verdict')}; models on "
                  f"{res['models']['teacher'].get('placement', {}).get('devices')}; "
                  f"timings {json.dumps(res.get('timings', {}).get('stages', res.get('timings')))[:300]}", flush=True)
            return True
        finally:
            import signal

            try:
                os.killpg(stack.pid, signal.SIGTERM)
                stack.wait(timeout=60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(stack.pid, signal.SIGKILL)
            log.close()
            if stack.returncode not in (0, -15, None):
                print((Path(data) / "stack.log").read_text()[-3000:])


def run(args) -> int:
    if args.wheels and Path(args.wheels).is_dir() and not os.environ.get("CIRCUITDIFF_GPU_CHECK_CHILD"):
        site = Path(tempfile.mkdtemp(prefix="gpu-check-site-"))
        got = install_missing(Path(args.wheels), site)
        print(f"installed from {args.wheels}: {len(got)} wheels into {site}" + (f" ({', '.join(got)})" if got else ""))
        env = {**os.environ, "CIRCUITDIFF_GPU_CHECK_CHILD": "1",
               "PYTHONPATH": os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")])}
        return subprocess.run([sys.executable, *sys.argv], env=env).returncode
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(REPO))
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device visible; on a CPU run with --device cpu --quick", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"gpu-check on {name}; torch {torch.__version__}; python {sys.version.split()[0]}; "
          f"load {' '.join(Path('/proc/loadavg').read_text().split()[:3]) if Path('/proc/loadavg').exists() else '?'}")
    prompts = 8 if args.quick else 32
    results = [
        exact_equals_naive(args.device, prompts),
        scan_benchmark(args.device, args.quick, timeout=args.step_timeout),
        llama_scale(args.device, args.quick, layers=2 if args.quick else args.layers, timeout=args.step_timeout),
        through_the_stack(args.device, prompts, timeout=args.step_timeout),
    ]
    print(f"\ngpu-check: {sum(results)}/{len(results)} steps ok")
    return 0 if all(results) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wheels", help="download the wheels the GPU machine lacks (build machine, with network)")
    w.add_argument("--dest", default=str(WHEELS))
    w.add_argument("--python-version", default="3.12", help="the GPU machine's Python (major.minor)")
    w.add_argument("--have", default=str(IMAGE_PACKAGES), help="distributions the GPU image already has")
    r = sub.add_parser("run", help="run the checks (GPU machine)")
    r.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    r.add_argument("--quick", action="store_true", help="smoke sizes (with --device cpu: what the test runs)")
    r.add_argument("--layers", type=int, default=8, help="real-width layers of the 8B-shaped teacher (step 3)")
    r.add_argument("--wheels", default=str(WHEELS), help="folder of wheels from `make gpu-wheels`")
    r.add_argument("--step-timeout", type=float, default=240.0, help="seconds each benchmark step may take")
    args = p.parse_args(argv)
    return wheels(args) if args.cmd == "wheels" else run(args)


if __name__ == "__main__":
    raise SystemExit(main())
