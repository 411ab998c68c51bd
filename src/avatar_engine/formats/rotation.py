"""Rotation units shared by every capture format, and Unity-convention quaternion helpers.

The engine's nine rotation channels (``HeadYaw`` ... ``RightEyeRoll``) are unitless scalars in
*Live Link units*: whatever the Live Link Face app sends, passed through unchanged, because Epic
does not document the unit (the reference notes deg/180 and radians are both consistent with
real takes) and ``convert`` passes CSV rotations through unchanged too. A rig turns channel
value 1.0 into ``scale_deg`` degrees of bone rotation (40 by default in every built-in rig).

Sources that *do* document their unit (iFacialMocap and VMC send degrees) are converted with
``channel = degrees / DEGREES_PER_UNIT``. The default of 40 matches the rigs' default
``scale_deg``, so a person turning their head 20 degrees turns a default rig's head 20 degrees.
Every receiver and egress adapter takes its own scale so a user can calibrate.
"""

from __future__ import annotations

import math
from typing import Final

DEGREES_PER_UNIT: Final = 40.0
"""Degrees of real rotation per engine channel unit (matches the rigs' default ``scale_deg``)."""

MAX_ROTATION_UNITS: Final = 8.0
"""Receivers clamp rotation channels to +-this (320 degrees at the default scale): larger values
are sensor glitches or unit mistakes, and clamping keeps them from spinning a head."""


def quat_to_yaw_pitch_roll(
    qx: float, qy: float, qz: float, qw: float
) -> tuple[float, float, float]:
    """Degrees (yaw about +Y, pitch about +X, roll about +Z) of a Unity-convention quaternion.

    Unity (and so VMC) composes Euler angles as ``R = Ry(yaw) * Rx(pitch) * Rz(roll)``; this is
    the inverse of :func:`yaw_pitch_roll_to_quat`. The quaternion need not be normalised.
    """
    norm = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    if not norm > 0.0:
        return 0.0, 0.0, 0.0
    qx, qy, qz, qw = qx / norm, qy / norm, qz / norm, qw / norm
    sin_pitch = max(-1.0, min(1.0, 2.0 * (qw * qx - qy * qz)))
    pitch = math.asin(sin_pitch)
    yaw = math.atan2(2.0 * (qw * qy + qx * qz), 1.0 - 2.0 * (qx * qx + qy * qy))
    roll = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qx * qx + qz * qz))
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def yaw_pitch_roll_to_quat(
    yaw_deg: float, pitch_deg: float, roll_deg: float
) -> tuple[float, float, float, float]:
    """Unity-convention quaternion ``(x, y, z, w)`` for ``Ry(yaw) * Rx(pitch) * Rz(roll)``."""
    hy, hp, hr = (math.radians(a) * 0.5 for a in (yaw_deg, pitch_deg, roll_deg))
    cy, sy = math.cos(hy), math.sin(hy)
    cp, sp = math.cos(hp), math.sin(hp)
    cr, sr = math.cos(hr), math.sin(hr)
    # (cy + sy j)(cp + sp i)(cr + sr k), expanded.
    x = cy * sp * cr + sy * cp * sr
    y = sy * cp * cr - cy * sp * sr
    z = cy * cp * sr - sy * sp * cr
    w = cy * cp * cr + sy * sp * sr
    return x, y, z, w
