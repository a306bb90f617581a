"""MkDocs hook: publish the benchmark plots, which live in benchmarks/ beside the scripts that draw them.

Copying them into docs/ would leave two versions to keep in step; the hook adds the files
themselves to the site, at ``benchmarks/<name>.png``, so ``docs/benchmarks.md`` links them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
PLOTS = ("benchmarks/throughput.png", "benchmarks/w3.png")


def on_files(files: Files, config: Any) -> Files:
    for path in PLOTS:
        urls = config["use_directory_urls"]
        plot = File(path, src_dir=str(ROOT), dest_dir=config["site_dir"], use_directory_urls=urls)
        files.append(plot)
    return files
