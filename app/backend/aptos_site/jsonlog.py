"""One-line JSON log records, so container logs are easy to grep and ship."""

import json
import logging
import os


class JsonFormatter(logging.Formatter):
    """Format a record as a single JSON object tagged with colour and release."""

    colour = os.environ.get("BG_COLOUR", "unknown")
    release = os.environ.get("BG_RELEASE", "unknown")

    def format(self, record: logging.LogRecord) -> str:
        """Keep only the fields an operator needs; never request bodies."""
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "colour": self.colour,
            "release": self.release,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)
