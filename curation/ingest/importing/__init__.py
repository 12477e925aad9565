"""Import images and labels into the ledger: the challenge JSON, a CSV, or a folder.

One pipeline (core.py) under three sources (imat.py, csvfile.py, folder.py); files.py holds
what the sources share about local files and URLs.
"""

from .core import HARMLESS, LIMITS, ON_ERROR, PROBLEMS, REPORT_COLUMNS, STAGE_CHUNK, ImportResult, Issue
from .csvfile import import_csv, read_label_map
from .files import IMAGE_SUFFIXES
from .folder import import_folder
from .imat import import_imat

__all__ = ["HARMLESS", "IMAGE_SUFFIXES", "LIMITS", "ON_ERROR", "PROBLEMS", "REPORT_COLUMNS", "STAGE_CHUNK",
           "ImportResult", "Issue", "import_csv", "import_folder", "import_imat", "read_label_map"]
