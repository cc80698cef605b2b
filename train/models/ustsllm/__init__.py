"""U-STS-LLM (paper 001): grid traffic forecasting and imputation with a LoRA-steered small LLM: the training side (torch)."""
