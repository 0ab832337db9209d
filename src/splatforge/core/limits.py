"""Input size limits shared by image loading and the layers above it.

Kept apart from `images.py` (numpy, Pillow) so that settings which only name a limit, such as
the service's `ImageLimits` read by `splatforge serve --help`, import nothing heavy.
"""

# 128 megapixels: a 100 MP camera's photos load, and the decoded float32 image stays < 1.6 GB.
DEFAULT_MAX_PIXELS = 2**27
