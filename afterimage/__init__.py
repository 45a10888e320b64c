"""afterimage: catches asynchronous image-generation results and archives them."""

__version__ = "0.1.0"
