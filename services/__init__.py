"""services package of slipway."""
