"""One module (or a few) per lesson, named after it."""
