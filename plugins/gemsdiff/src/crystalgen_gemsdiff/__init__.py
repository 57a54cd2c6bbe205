"""GemsDiff for crystalgen."""
