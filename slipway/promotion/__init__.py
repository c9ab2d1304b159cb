"""The promotion rule (pure) and the gate that applies it to registered versions."""
