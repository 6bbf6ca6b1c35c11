"""How framelog's processes log: plain lines for people, or JSON lines for a log pipeline.

``FRAMELOG_LOG_FORMAT=json`` switches every worker and sink to one JSON object
per line (time, level, logger, process role, message, exception), which Loki,
Elasticsearch or CloudWatch ingest without a parser; the default stays the
readable text format.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

FORMAT_ENV = "FRAMELOG_LOG_FORMAT"


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str):
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "role": self.role,
                "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(role: str, level: int = logging.INFO) -> None:
    """Root logging for one framelog process (``role``: a worker group, ``analytics-sink``, ``api``)."""
    handler = logging.StreamHandler()
    if os.environ.get(FORMAT_ENV, "text").lower() == "json":
        handler.setFormatter(JsonFormatter(role))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
