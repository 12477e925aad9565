"""Getting images and labels into the ledger: `ifa import` and `ifa fetch`.

Start with `importing.py` (challenge JSON, CSV, folders); `fetch.py` downloads URL-only
images through `downloader.py` (HTTP, retries) into `image_store.py` (content-addressed files).
"""
