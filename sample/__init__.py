"""The bundled CC0 sample: 310 real clothing photos in the challenge's JSON format."""

from pathlib import Path

SAMPLE_DIR = Path(__file__).parent / "clothing-cc0"
IMAGES_DIR = SAMPLE_DIR / "images"


def split_file(split: str) -> Path:
    """The challenge-format JSON of one split of the sample."""
    return SAMPLE_DIR / f"{split}.json"
