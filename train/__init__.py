"""Training side: load MNIST, build and fit the softmax and CNN models, save ``.keras``."""
