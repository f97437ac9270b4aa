"""The base layer: what every other package may use (errors a person reads, where data
lives, settings storage, one way to format figures, logging). It imports nothing of ours."""
