"""One module per unit, each registering that unit's exercises with ``@exercise``."""
