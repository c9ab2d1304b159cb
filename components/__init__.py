"""components package of slipway."""
