"""Neural style transfer: VGG16 weights (vgg), the Gatys costs (costs), the optimisation (gatys)."""
