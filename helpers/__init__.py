"""GPU training helpers for the ResNet-18 course notebooks. One module per concern."""
