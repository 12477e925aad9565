"""`ifa curate check-images`: pictures that are not product photos (placeholders, blank,
tiny, odd-shaped, grey, blurred, mostly border), found from per-image statistics."""
