"""The desired-state fingerprint stored as a Helm release label."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: Kubernetes label values are at most 63 characters; a sha256 hex digest is 64.
FINGERPRINT_LENGTH = 63


def fingerprint(chart_digest: str, values_digest: str, options: Mapping[str, Any]) -> str:
    """sha256 over the chart digest, the values digest and the helm options (canonical JSON)."""
    doc = {"chart": chart_digest, "values": values_digest, "options": dict(options)}
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:FINGERPRINT_LENGTH]
