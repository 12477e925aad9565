"""What it costs to let Label Studio serve only a round's images (annotation/files.py).

Imports a folder of real photos, then times `task_data` for every image on the embedded
server (one link per image, first run makes them, a rerun checks them) and on a server ifa
does not run (no links), and counts what the link tree holds. No Label Studio is needed:
the links folder is made under a temp server folder.

    python -m benchmarks.review_links /work/shared/data/myntra-products/images
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from ifa.annotation.client import Connection
from ifa.annotation.files import document_root, task_data
from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace


def main(folder: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws", command="benchmark")
        importing.import_folder(ws, Path(folder), "validation")
        sources = ws.ledger.images_frame(["validation"])
        server_root = Path(tmp) / "labelstudio"
        server_root.mkdir()
        embedded = Connection("http://127.0.0.1:9", "t", embedded_root=server_root)
        for label, conn in (("embedded, links made", embedded), ("embedded, links there", embedded),
                            ("another server", Connection("http://127.0.0.1:9", "t"))):
            cpu, wall = time.process_time(), time.perf_counter()
            files = task_data(ws, sources, conn)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"{label:24s} {len(files.data):6,} images  {wall:6.2f} s wall  {cpu:6.2f} s CPU  "
                  f"{1e6 * cpu / max(1, len(files.data)):6.0f} us CPU/image  {len(files.roots)} storage roots")
        tree = [p for p in document_root(server_root).rglob("*") if not p.is_dir() or p.is_symlink()]
        print(f"link tree: {len(tree):,} entries, all links: {all(p.is_symlink() for p in tree)}; "
              f"load average {os.getloadavg()[0]:.1f}")
        ws.close()


if __name__ == "__main__":
    main(sys.argv[1])
