"""``python -m docket_gen`` is ``docket-gen``."""

from .entry import docket_gen

docket_gen()
