"""One module per benchmark (or family); bench/run.py imports every module here."""
