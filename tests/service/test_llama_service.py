"""The bundled Llama pair and a GPT-2 / Llama cross-family pair compared over HTTP: a real API, Redis
and worker (tests/service_fixtures.py), the worker's model loader with the memory plan (issue #14)."""

from __future__ import annotations

import shutil

from circuitdiff.result import ComparisonResult
from tests.service_fixtures import poll_until


def _under_root(svc_data, name, src) -> str:
    dst = svc_data / "models" / name
    if not dst.exists():
        shutil.copytree(src, dst)
    return str(dst.resolve())


def test_llama_pairs_compare_over_http(alice, svc_worker, svc_data, tiny_llama_other_vocab_dir, tiny_gpt_dir):
    other = _under_root(svc_data, "llama-other", tiny_llama_other_vocab_dir)
    gpt = _under_root(svc_data, "gpt-for-llama", tiny_gpt_dir)
    jobs = {
        "llama": {"teacher": "zoo:llama-teacher", "student": "zoo:llama-student", "task": "ioi", "n_prompts": 12,
                  "preset": "paper"},
        "cross": {"teacher": gpt, "student": other, "task": "ioi", "n_prompts": 6},
    }
    ids = {}
    for k, spec in jobs.items():
        r = alice.post("/v1/comparisons", json=spec)
        assert r.status_code == 202, r.text
        ids[k] = r.json()["id"]
    # resolved once, at submission: the status shows the ablation the result will carry (issue #22)
    assert alice.get(f"/v1/comparisons/{ids['llama']}").json()["spec"]["ablation"] == "token_mean"
    for k, jid in ids.items():
        done = poll_until(alice, jid, {"succeeded", "failed"}, timeout=600)
        assert done["status"] == "succeeded", done
    llama = ComparisonResult.model_validate(alice.get(f"/v1/comparisons/{ids['llama']}/result").json())
    assert llama.models["teacher"].architecture == llama.models["student"].architecture == "LlamaForCausalLM"
    assert llama.spec["ablation"] == "token_mean" and "llama_influence.ipynb" in llama.scan.ablation_protocol
    status = alice.get(f"/v1/comparisons/{ids['llama']}").json()
    assert status["spec"] == llama.spec  # status, result and a re-run show one spec
    assert llama.models["teacher"].placement["dtype"] == "float32" and llama.scan.microbatch_rows
    assert all(p.performs_task for p in llama.performance.values())  # the zoo pair solves IOI
    assert llama.task.token_alignment == "shared_vocabulary"  # it shares the zoo GPT tokenizer
    cross = ComparisonResult.model_validate(alice.get(f"/v1/comparisons/{ids['cross']}/result").json())
    assert {cross.models[r].architecture for r in ("teacher", "student")} == {"GPT2LMHeadModel", "LlamaForCausalLM"}
    assert cross.task.token_alignment == "word_pooled" and 0 < cross.alignment.score <= 1
