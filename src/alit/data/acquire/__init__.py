"""Data sets that can be had offline, acquired into image folders (`alit data ...`): the real photos
of pip wheels and Debian packages (`photos`), Fashion-MNIST (`fashion_mnist`). The package core
never imports this: it only reads the folders these make."""
