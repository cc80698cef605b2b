"""FatsMB (paper 003): latent preference diffusion for multi-behavior sequential recommendation: the torch-free runtime session."""
