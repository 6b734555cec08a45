"""Settings from the environment (KJERNE_*) and command-line flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw and raw.isdigit() else default


@dataclass(slots=True)
class Settings:
    db_url: str = "sqlite:///var/kjerne.db"
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = ""
    max_body_bytes: int = 20 * 1024 * 1024
    dev: bool = False
    var_dir: Path = field(default_factory=lambda: Path("var"))
    issuers_file: str | None = None  # JSON list of {issuer, audiences, jwks_path | jwks_url}
    audience: str = "kjerne"
    keepalive_requests: int = 100  # a keep-alive connection is closed after this many (0: never)
    write_concurrency: int = 2  # Bundles and producer messages written at once per worker (api/write_slots.py)

    @classmethod
    def from_env(cls) -> Settings:
        s = cls(
            db_url=os.environ.get("KJERNE_DB", "sqlite:///var/kjerne.db"),
            host=os.environ.get("KJERNE_HOST", "127.0.0.1"),
            port=_env_int("KJERNE_PORT", 8080),
            max_body_bytes=_env_int("KJERNE_MAX_BODY_BYTES", 20 * 1024 * 1024),
            dev=os.environ.get("KJERNE_DEV", "") in ("1", "true", "yes"),
            issuers_file=os.environ.get("KJERNE_ISSUERS") or None,
            audience=os.environ.get("KJERNE_AUDIENCE", "kjerne"),
            keepalive_requests=_env_int("KJERNE_KEEPALIVE_REQUESTS", 100),
            write_concurrency=_env_int("KJERNE_WRITE_CONCURRENCY", 2),
        )
        s.var_dir = Path(os.environ.get("KJERNE_VAR", "var"))
        s.base_url = os.environ.get("KJERNE_BASE_URL", "")
        return s

    def public_base(self) -> str:
        return self.base_url or f"http://{self.host}:{self.port}"

    def fhir_base(self) -> str:
        return self.public_base().rstrip("/") + "/fhir"
