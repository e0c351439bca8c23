"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in tests/service/test_contract_fuzz.py: the dataset upload's
body is JSONL text (application/x-ndjson), which schemathesis then sends as it sends text/plain."""

import schemathesis
from schemathesis.core.transforms import to_wire_text


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    return {"data": value if isinstance(value, bytes) else to_wire_text(value).encode("utf-8")}


# POST /v1/watches refers to the world (a teacher, a checkpoint directory, a comparison the engine can
# run, a webhook target that resolves): generated values almost never do, so creation was never
# fuzzed past validation (0 of 1,949 accepted). Positive cases get those four from this stack's world
# (tests/service/test_contract_fuzz.py makes `runs/` and allows loopback webhooks); every other field
# stays as generated. Negative cases are left alone, so refusals are still checked.
@schemathesis.hook
def map_case(ctx, case):
    from schemathesis.generation.modes import GenerationMode

    op = ctx.operation
    if op is None or op.method.upper() != "POST" or op.path != "/v1/watches" or not isinstance(case.body, dict):
        return case
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return case
    body = dict(case.body)
    source = {k: v for k, v in (body.get("checkpoints") or {}).items() if k not in ("hub", "revisions")}
    body.update(teacher={"id": "zoo:gpt-teacher"}, checkpoints={**source, "directory": "runs"},
                comparison={"task": "ioi", "n_prompts": 8})
    alerts = body.get("alerts")
    if isinstance(alerts, dict) and isinstance(alerts.get("webhook"), dict):
        body["alerts"] = {**alerts, "webhook": {**alerts["webhook"], "url": "http://127.0.0.1:9/hook"}}
    case.body = body
    return case
