"""Page calls for tests that run them in page workers: some misbehave (hang, eat memory, abort), by
the file's name. A module of its own, light to import: each page worker imports it under its cap."""

from __future__ import annotations

import os
import time
from pathlib import Path

from spanqa.service.page_workers import run_page_call


def misbehaving_call(pages, method: str, path: str, args: tuple, kwargs: dict):
    name = Path(path).name
    if name.startswith("hang"):
        time.sleep(600)
    if name.startswith("hog"):
        hog = bytearray(8 * 1024**3)  # far above the cap: MemoryError
        hog[0] = 1
    if name.startswith("abort"):
        os.abort()  # as pdfium does when an allocation fails
    return run_page_call(pages, method, path, args, kwargs)
