"""U-STS-LLM (paper 001): grid traffic forecasting and imputation with a LoRA-steered small LLM: the exporter (checkpoint -> verified bundle)."""
