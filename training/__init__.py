"""cnnzoo training: architectures, data, recipes and the training loop."""
