"""msmine core: version, the user-error type, the CLI dispatcher, config and the wire format.

This package is dependency-light (numpy, PyYAML) and never imports torch, so both the device
(``edge_runtime``) and the collection server (``server``) can import it.
"""

from msmine.errors import UserError

__version__ = "0.1.0"

__all__ = ["UserError", "__version__"]
