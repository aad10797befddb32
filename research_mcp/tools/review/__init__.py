"""Review: the paper audit, reviews and their forms."""
