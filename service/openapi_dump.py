"""``python -m service.openapi_dump openapi/openapi.json`` (``make openapi``): the committed contract.

Generated from the app itself, so the file and the code cannot disagree for long: a test compares them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jobs.settings import Settings

from .main import create_app


def openapi_text() -> str:
    # Placeholder URL: building the schema never connects (the lifespan does not run).
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", data_dir=Path("/nonexistent"), api_keys=[], host="127.0.0.1"))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "openapi/openapi.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(openapi_text())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
