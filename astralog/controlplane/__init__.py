"""Control plane: commands -> events (hash-chained log) -> projections."""
