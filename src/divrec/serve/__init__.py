"""The recommendation service: model directories, the durable event log, the service core
and its FastAPI app (`divrec train` / `divrec serve`).

Layering: above `divrec.pipeline`; nothing here imports the CLI. The HTTP layer
(`divrec.serve.app`) needs the optional `serve` extra (fastapi, uvicorn, prometheus-client).
"""

from divrec.serve.config import ConfigError, TrainConfig, load_config, parse_config

__all__ = ["ConfigError", "TrainConfig", "load_config", "parse_config"]
