"""The model's feature space, torch-free: the stored projection and the two-sample MMD test."""
