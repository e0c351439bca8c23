"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in tests/service/test_contract_fuzz.py: the dataset upload's
body is JSONL text (application/x-ndjson), which schemathesis then sends as it sends text/plain."""

import schemathesis
from schemathesis.core.transforms import to_wire_text


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    return {"data": value if isinstance(value, bytes) else to_wire_text(value).encode("utf-8")}
