"""The web server's typed settings, one declaration each: the CLI's defaults, the app's limits, the workers'.

Kept free of heavy imports (no torch, FastAPI or uvicorn) so that `mnistlab serve --help` can show the
defaults. Several worker processes receive a :class:`ServeConfig` as JSON in one environment variable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

SERVE_ENV = "MNISTLAB_SERVE"  # ServeConfig.to_json() for worker processes and `uvicorn --factory`


@dataclass(frozen=True)
class ServeLimits:
    """What one server process accepts; every limit holds per worker process."""

    max_body: int = 2 * 1024 * 1024  # bytes per request body; more gets 413
    request_timeout: float = 10.0  # s for a request's headers, then s for its body; slower gets 408
    max_in_flight: int = 256  # requests in progress at once: 2x the 128 connections we test; more get 503
    retry_after: int = 1  # s, the Retry-After sent with that 503
    torch_threads: int = 1  # intra-op threads of the inference thread: leaves a core to the event loop

    def __post_init__(self) -> None:
        numbers = (
            self.max_body,
            self.request_timeout,
            self.max_in_flight,
            self.retry_after,
            self.torch_threads,
        )
        if any(not isinstance(n, int | float) or isinstance(n, bool) or n <= 0 for n in numbers):
            raise ValueError(f"serve limits must be positive numbers: {self}")


@dataclass(frozen=True)
class ServeConfig:
    """One `mnistlab serve`: which run, where, how many processes, and the limits of each."""

    run_dir: str
    host: str = "127.0.0.1"  # this machine only
    port: int = 8000  # 0: any free port (printed at start)
    workers: int = 1  # processes sharing the listening socket, each with its own inference thread
    limits: ServeLimits = field(default_factory=ServeLimits)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        """Inverse of :meth:`to_json`; missing keys take their defaults. Raises ValueError if malformed."""
        try:
            data = json.loads(text)
            limits = ServeLimits(**data.pop("limits", {}))
            return cls(**data, limits=limits)
        except (json.JSONDecodeError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a serve config ({exc})") from None
