"""FatsMB (paper 003): latent preference diffusion for multi-behavior sequential recommendation: the training side (torch)."""
