"""Datasets, torch-free: scan and validate an ImageFolder, split, fingerprint, the offline demo
set, and the train split's reference statistics."""
