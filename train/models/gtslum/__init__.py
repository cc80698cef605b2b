"""GTS-LUM (paper 002): LLM telecom user-behavior modeling (semantic timestamps, Q-Former, target-aware): the training side (torch)."""
