"""The model folder's contract, torch-free: the card, the one preprocessing transform and the
drift reference. Serving and the drift monitor need nothing else of the core."""
