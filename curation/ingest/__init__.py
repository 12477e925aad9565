"""Getting images and labels into the ledger: `ifa import` and `ifa fetch`.

Start with `importing/` (one pipeline in core.py under the challenge JSON, CSV and folder sources); `fetch.py` downloads URL-only
images through `downloader.py` (HTTP, retries) into `image_store.py` (content-addressed files).
"""
