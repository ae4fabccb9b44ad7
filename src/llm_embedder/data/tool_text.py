"""How a tool definition becomes the text of a key: one rendering for the demo data, `adapt` and serving."""

from __future__ import annotations

import json
from typing import Any


def render_function(fn: dict[str, Any]) -> str:
    """A function document as one key, in the shape of the ToolBench keys of the released data:
    ``name, description, required_params: [...], optional_params: [...]``."""
    params = fn.get("parameters") or {}
    props = params.get("properties") or {}
    required = [n for n in params.get("required") or [] if n in props]

    def describe(name: str) -> dict[str, str]:
        spec = props.get(name) or {}
        return {"name": name, "type": str(spec.get("type", "")), "description": str(spec.get("description", ""))}

    req = [describe(n) for n in required]
    opt = [describe(n) for n in props if n not in required]
    description = " ".join(str(fn.get("description", "")).split())
    return (
        f"{fn.get('name', '')}, {description}, required_params: {json.dumps(req, ensure_ascii=False)}, "
        f"optional_params: {json.dumps(opt, ensure_ascii=False)}"
    )
