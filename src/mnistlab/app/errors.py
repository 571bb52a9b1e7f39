"""The app's one error type, shared by image loading, ink finding and number reading."""

from __future__ import annotations

from mnistlab.errors import MnistlabError


class ImageError(MnistlabError):
    """An input image cannot be used: not an image, unsupported, too large, blank or missing; the message
    names the file and says why in plain words."""
