"""avatar-engine: real-time facial animation.

Faces come in (ARKit capture, text, audio), are animated onto a rig's morph targets by
batched kernels, and go out as compact morph streams. This top-level module re-exports the
small library API; the rest lives in the subpackages named in ``docs/architecture.md``.
"""

from importlib.metadata import PackageNotFoundError, version

from avatar_engine.kernels.backends import available_backends, default_backend
from avatar_engine.kernels.retarget import Retargeter
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES, normalize_arkit_name
from avatar_engine.rigs.profile import RigProfile, builtin_rig_names, load_rig

try:
    __version__ = version("avatar-engine")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = [
    "ARKIT_NAMES",
    "ROTATION_NAMES",
    "Retargeter",
    "RigProfile",
    "__version__",
    "available_backends",
    "builtin_rig_names",
    "default_backend",
    "load_rig",
    "normalize_arkit_name",
]
