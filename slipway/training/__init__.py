"""torch: architectures, the training loop, DDP under torchrun and Kubeflow jobs, data loading,
evaluation and export (ONNX, TorchScript, parity, latency)."""
