"""Generate the bundled demo head: a stylized glTF head with CC4 Extended morph names.

    python tools/make_head.py [-o src/avatar_engine/web/head.glb] [--check]

The head is built from parametric shapes with numpy and written with pygltflib:

* ``Face``: the skin, a deformed latitude/longitude ellipsoid with a nose, eye sockets, lips
  and hair painted in vertex colours, and a mouth *slit*: along the mouth line the vertices are
  doubled, the upper copies belong to the upper lip and the lower copies to the lower lip, so
  the jaw bone (``CC_Base_JawRoot``, skin weights) opens a real hole. Behind it sits
  ``Mouth_Cavity`` (dark, skinned to head and jaw), the teeth and the tongue.
* Bones (glTF nodes, named as in a CC4 export): ``CC_Base_Head`` (the head channels rotate it
  about its local y/x/z), ``CC_Base_JawRoot`` (rest orientation chosen so that +z opens the
  jaw, as the rig's bone driver expects), ``CC_Base_Teeth02`` (lower teeth),
  ``CC_Base_Tongue01`` (tongue), ``CC_Base_L_Eye`` and ``CC_Base_R_Eye`` (local z up, y
  forward, like CC4's eye bones, so the rig's eye channel axes apply).
* Morph targets, named exactly as the ``cc4-extended`` rig profile: every morph that its
  ``arkit52``, ``visemes`` and ``emotions`` mappings drive, each placed on the meshes it moves
  (``Face``, ``Brows``, ``Eyelids``, ``Eye_L``/``Eye_R``, ``Tongue``), each shaped to read on
  its own on screen. Targets are stored as sparse accessors (only the vertices they move).

The output is deterministic for a given numpy; ``--check`` regenerates in memory and exits 1
if the file on disk lacks a required morph or differs in its morph deltas.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "avatar_engine" / "web" / "head.glb"
RIG_FILE = ROOT / "src" / "avatar_engine" / "rigs" / "data" / "cc4-extended.json"

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# --- proportions (metres; the face looks down +z, +y is up, the character's left is +x) ---
RX, RY, RZ = 0.085, 0.11, 0.095  # head ellipsoid radii
MOUTH_Y = -0.047  # the mouth line
MOUTH_HALF = 0.40  # half-width of the slit, radians of longitude
EYE_R = 0.014  # eyeball radius
EYE_C = np.array([0.033, 0.022, 0.078])  # left eye centre (right is mirrored)
LID_R = 0.0167  # eyelid shell radius (> EYE_R / cos(30 deg): a half blink stays outside)
HEAD_PIVOT = np.array([0.0, -0.10, -0.01])
JAW_PIVOT = np.array([0.0, -0.03, 0.0])
N_LAT, N_LON = 72, 96

SKIN = (0.93, 0.74, 0.62)
LIP = (0.78, 0.36, 0.38)
HAIR = (0.20, 0.13, 0.09)
BROW = (0.16, 0.10, 0.07)


def smoothstep(e0: float | F64, e1: float | F64, x: F64) -> F64:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gauss(p: F64, centre: npt.ArrayLike, radii: npt.ArrayLike) -> F64:
    d = (p - np.asarray(centre, float)) / np.asarray(radii, float)
    out: F64 = np.exp(-np.sum(d * d, axis=1))
    return out


def rot_x(a: float) -> F64:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a: float) -> F64:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def quat(m: F64) -> list[float]:
    """Rotation matrix -> glTF quaternion [x, y, z, w]."""
    w = math.sqrt(max(0.0, 1.0 + m[0, 0] + m[1, 1] + m[2, 2])) / 2.0
    x = math.copysign(
        math.sqrt(max(0.0, 1.0 + m[0, 0] - m[1, 1] - m[2, 2])) / 2.0, m[2, 1] - m[1, 2]
    )
    y = math.copysign(
        math.sqrt(max(0.0, 1.0 - m[0, 0] + m[1, 1] - m[2, 2])) / 2.0, m[0, 2] - m[2, 0]
    )
    z = math.copysign(
        math.sqrt(max(0.0, 1.0 - m[0, 0] - m[1, 1] + m[2, 2])) / 2.0, m[1, 0] - m[0, 1]
    )
    return [round(v, 7) + 0.0 for v in (x, y, z, w)]


# Eye bones: local x = world -x, local y = forward (+z), local z = up (+y), as CC4 eye bones.
EYE_BASIS = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
# Jaw bones: local z = world +x, so a positive rotation about local z lowers the chin.
JAW_BASIS = rot_y(math.pi / 2)


@dataclass
class Part:
    """One mesh: positions in head (world) space, triangles, colours, optional skin data."""

    name: str
    pos: F64
    tri: npt.NDArray[np.uint32]
    color: F64
    material: str
    joints: npt.NDArray[np.uint8] | None = None
    weights: F64 | None = None
    morphs: dict[str, F64] = field(default_factory=dict)


def normals(pos: F64, tri: npt.NDArray[np.uint32]) -> F32:
    n = np.zeros_like(pos)
    a, b, c = pos[tri[:, 0]], pos[tri[:, 1]], pos[tri[:, 2]]
    fn = np.cross(b - a, c - a)
    for k in range(3):
        np.add.at(n, tri[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    out: F32 = (n / np.maximum(length, 1e-12)).astype(np.float32)
    return out


def uv_sphere(n_lat: int, n_lon: int) -> tuple[F64, F64, npt.NDArray[np.uint32]]:
    """Unit sphere rows from +y (top) to -y; returns (theta, phi, triangles) per vertex."""
    theta = np.linspace(0.0, math.pi, n_lat + 1)
    phi = np.linspace(-math.pi, math.pi, n_lon + 1)[:-1]
    tt, pp = np.meshgrid(theta, phi, indexing="ij")
    tris = []
    for i in range(n_lat):
        for j in range(n_lon):
            a = i * n_lon + j
            b = i * n_lon + (j + 1) % n_lon
            c = (i + 1) * n_lon + j
            d = (i + 1) * n_lon + (j + 1) % n_lon
            tris.append((a, c, b))
            tris.append((b, c, d))
    return tt.ravel(), pp.ravel(), np.array(tris, dtype=np.uint32)


def sphere_points(theta: F64, phi: F64) -> F64:
    return np.stack([np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)], 1)


# ---------------------------------------------------------------------------------- the skin


def head_surface(theta: F64, phi: F64) -> F64:
    u = sphere_points(theta, phi)
    p = u * np.array([RX, RY, RZ])
    lower = np.clip(-p[:, 1] / RY, 0.0, 1.0)
    p[:, 0] *= 1.0 - 0.30 * lower**2  # narrower jaw and chin
    p[:, 2] *= 1.0 - 0.12 * lower**2 * (p[:, 2] < 0)  # flatter nape
    p[:, 2] += 0.010 * np.exp(-(((p[:, 1] - MOUTH_Y + 0.015) / 0.03) ** 2)) * (p[:, 2] > 0)
    front = np.clip(p[:, 2] / RZ, 0.0, 1.0)
    # nose: a ridge and a tip
    nose = gauss(p, [0, 0.0, RZ], [0.011, 0.028, 0.05]) * front
    tip = gauss(p, [0, -0.012, RZ], [0.012, 0.010, 0.05]) * front
    p[:, 2] += 0.016 * nose + 0.012 * tip
    # eye sockets and brow ridge
    for sx in (1.0, -1.0):
        c = EYE_C * [sx, 1, 1]
        p -= (0.009 * gauss(p, [c[0], c[1], RZ], [0.016, 0.013, 0.06]) * front)[:, None] * u
        p[:, 2] += 0.004 * gauss(p, [c[0], c[1] + 0.024, RZ], [0.02, 0.006, 0.06]) * front
    # lips: a little volume
    lips = gauss(p, [0, MOUTH_Y, RZ], [0.030, 0.011, 0.05]) * front
    p[:, 2] += 0.005 * lips
    out: F64 = p
    return out


def make_face() -> tuple[Part, dict[str, F64]]:
    theta, phi, tri = uv_sphere(N_LAT, N_LON)
    pos = head_surface(theta, phi)
    n_lon = N_LON
    # the mouth row: the latitude row closest to the mouth line at the front
    rows = pos.reshape(N_LAT + 1, n_lon, 3)
    front_col = int(np.argmin(np.abs(phi[:n_lon])))
    i_m = int(np.argmin(np.abs(rows[:, front_col, 1] - MOUTH_Y)))
    lon = phi[:n_lon]
    inside = np.nonzero(np.abs(lon) < MOUTH_HALF - 1e-9)[0]
    # Double the inner vertices of the mouth row: originals stay with the upper lip.
    dup_src = (i_m * n_lon + inside).astype(np.uint32)
    dup_of = {int(s): len(pos) + k for k, s in enumerate(dup_src)}
    pos = np.vstack([pos, pos[dup_src]])
    theta = np.concatenate([theta, theta[dup_src]])
    phi = np.concatenate([phi, phi[dup_src]])
    tri = tri.copy()
    # triangles of the band below the mouth row use the lower copies
    band = (tri.max(axis=1) >= (i_m + 1) * n_lon) & (tri.min(axis=1) >= i_m * n_lon)
    band &= tri.min(axis=1) < (i_m + 1) * n_lon
    for t in np.nonzero(band)[0]:
        tri[t] = [dup_of.get(int(v), int(v)) for v in tri[t]]
    n = len(pos)
    lower_copy = np.zeros(n, bool)
    lower_copy[len(pos) - len(dup_src) :] = True
    on_row = np.zeros(n, bool)
    on_row[i_m * n_lon : (i_m + 1) * n_lon] = True
    on_row |= lower_copy
    y, x, z = pos[:, 1], pos[:, 0], pos[:, 2]
    # side of the mouth line: +1 upper lip side, -1 lower, 0 on the row outside the slit
    side = np.where(y > MOUTH_Y + 1e-6, 1.0, -1.0)
    side[on_row] = np.where(lower_copy[on_row], -1.0, 1.0)
    outside_slit = on_row & ~lower_copy & ~np.isin(np.arange(n), dup_src)
    side[outside_slit] = 0.0
    front = np.clip(z / RZ, 0.0, 1.0)
    across = np.clip(1.0 - (np.abs(phi) / (MOUTH_HALF * 1.35)) ** 2, 0.0, 1.0)
    dy = y - MOUTH_Y

    # skin weights: head 0, jaw 1
    jaw_w = np.zeros(n)
    below = side < 0
    lateral = 1.0 - smoothstep(0.45, 1.25, np.abs(phi))
    ahead = smoothstep(-0.03, 0.03, z)
    depth = smoothstep(0.0, -0.02, dy)  # outside the slit: fade in below the mouth line
    inner = np.abs(phi) < MOUTH_HALF
    jaw_w[below] = (lateral * ahead * np.where(inner, 1.0, depth))[below]
    corner = on_row & (side == 0)
    jaw_w[corner] = 0.35 * lateral[corner] * ahead[corner]
    jaw_w = np.clip(jaw_w, 0.0, 1.0)

    # colours: skin, lips, cheeks, hair
    col = np.tile(np.array(SKIN), (n, 1))
    lip_up = np.exp(-((np.maximum(dy, 0) / 0.0075) ** 2)) * (side >= 0)
    lip_lo = np.exp(-((np.minimum(dy, 0) / 0.0095) ** 2)) * (side <= 0)
    lip_w = np.clip(np.maximum(lip_up, lip_lo) * across * front, 0, 1)
    lip_w = smoothstep(0.35, 0.6, lip_w)
    col = col * (1 - lip_w[:, None]) + np.array(LIP) * lip_w[:, None]
    seam = on_row & (np.abs(phi) < MOUTH_HALF + 0.02)
    col[seam] = np.array(LIP) * 0.45
    for sx in (1.0, -1.0):
        blush = 0.35 * gauss(pos, [sx * 0.052, -0.018, RZ], [0.02, 0.016, 0.06]) * front
        col = col * (1 - blush[:, None]) + np.array([0.95, 0.55, 0.52]) * blush[:, None]
    hairline = 0.058 + 0.035 * (1 - front) - 0.01 * np.cos(phi * 3) * front
    hair_w = smoothstep(hairline - 0.004, hairline + 0.004, y)
    hair_w = np.maximum(hair_w, smoothstep(0.0, -0.04, z) * smoothstep(-0.06, -0.02, y))
    col = col * (1 - hair_w[:, None]) + np.array(HAIR) * hair_w[:, None]

    masks = {
        "side": side,
        "front": front,
        "across": across,
        "dy": dy,
        "jaw": jaw_w,
        "x": x,
        "phi": phi,
    }
    joints = np.zeros((n, 4), np.uint8)
    joints[:, 1] = 1
    weights = np.zeros((n, 4))
    weights[:, 0] = 1 - jaw_w
    weights[:, 1] = jaw_w
    part = Part("Face", pos, tri, col, "skin", joints, weights)
    return part, masks


# ---------------------------------------------------------------------------- other parts


def ellipsoid(
    centre: npt.ArrayLike, radii: npt.ArrayLike, n_lat: int, n_lon: int
) -> tuple[F64, npt.NDArray[np.uint32]]:
    theta, phi, tri = uv_sphere(n_lat, n_lon)
    return np.asarray(centre) + sphere_points(theta, phi) * np.asarray(radii), tri


def make_cavity() -> Part:
    pos, tri = ellipsoid([0, MOUTH_Y - 0.004, 0.052], [0.034, 0.022, 0.026], 16, 24)
    w = smoothstep(MOUTH_Y + 0.004, MOUTH_Y - 0.012, pos[:, 1])
    joints = np.tile(np.array([0, 1, 0, 0], np.uint8), (len(pos), 1))
    weights = np.zeros((len(pos), 4))
    weights[:, 0] = 1 - w
    weights[:, 1] = w
    col = np.tile(np.array([0.16, 0.03, 0.05]), (len(pos), 1))
    return Part("Mouth_Cavity", pos, tri, col, "cavity", joints, weights)


def teeth_band(y_top: float, y_bot: float, z_mid: float, name: str) -> Part:
    """A curved band of teeth following the lip arc, facing forward."""
    n_u, n_v = 40, 4
    u = np.linspace(-1.0, 1.0, n_u)
    v = np.linspace(0.0, 1.0, n_v)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    half_w = 0.027
    xs = uu * half_w
    zs = z_mid - 0.016 * uu**2
    ys = y_top + (y_bot - y_top) * vv
    pos = np.stack([xs, ys, zs], -1).reshape(-1, 3)
    tris = []
    for i in range(n_u - 1):
        for j in range(n_v - 1):
            a, b = i * n_v + j, (i + 1) * n_v + j
            tris += [(a, a + 1, b), (b, a + 1, b + 1)]
    # tooth gaps: a faint grey every 1/8 of the arc
    gap = np.abs(np.sin(uu.ravel() * math.pi * 4)) < 0.12
    col = np.where(gap[:, None], [0.72, 0.70, 0.66], [0.97, 0.96, 0.92])
    return Part(name, pos, np.array(tris, np.uint32), col, "teeth")


def make_tongue() -> Part:
    pos, tri = ellipsoid([0, MOUTH_Y - 0.016, 0.056], [0.019, 0.006, 0.025], 12, 20)
    col = np.tile(np.array([0.80, 0.33, 0.36]), (len(pos), 1))
    return Part("Tongue", pos, tri, col, "tongue")


def make_eye(sx: float) -> Part:
    c = EYE_C * [sx, 1, 1]
    theta, phi, tri = uv_sphere(24, 32)
    # pole toward +z: build around y then rotate so the iris (the old +y pole) looks forward
    u = sphere_points(theta, phi) @ rot_x(math.pi / 2).T
    pos = c + u * EYE_R
    ang = np.arccos(np.clip(u[:, 2], -1, 1))
    col = np.tile(np.array([0.97, 0.97, 0.95]), (len(pos), 1))
    col[ang < 0.50] = [0.25, 0.45, 0.62]
    col[ang < 0.30] = [0.16, 0.30, 0.45]
    col[ang < 0.20] = [0.02, 0.02, 0.03]
    return Part("Eye_L" if sx > 0 else "Eye_R", pos, tri, col, "eye")


def lid_shell(
    c: F64, up: bool, span: float, n_a: int = 10, n_b: int = 28
) -> tuple[F64, F64, npt.NDArray[np.uint32]]:
    """A cap of radius LID_R about c: polar angle 0..span from +y (upper lid) or -y (lower)."""
    a = np.linspace(0.0, 1.0, n_a + 1)
    b = np.linspace(-math.pi, math.pi, n_b + 1)[:-1]
    aa, bb = np.meshgrid(a, b, indexing="ij")
    frac = aa.ravel()
    tris = []
    for i in range(n_a):
        for j in range(n_b):
            p, q = i * n_b + j, i * n_b + (j + 1) % n_b
            r, s = (i + 1) * n_b + j, (i + 1) * n_b + (j + 1) % n_b
            tris += [(p, r, q), (q, r, s)] if up else [(p, q, r), (q, s, r)]
    return frac, bb.ravel(), np.array(tris, np.uint32)


def lid_points(c: F64, frac: F64, lon: F64, span: float, up: bool) -> F64:
    alpha = frac * span
    d = np.stack([np.sin(alpha) * np.sin(lon), np.cos(alpha), np.sin(alpha) * np.cos(lon)], 1)
    if not up:
        d[:, 1] *= -1
    return c + d * LID_R


UPPER_OPEN, UPPER_CLOSED, UPPER_WIDE, UPPER_SQUINT = 1.00, 1.98, 0.70, 1.25
LOWER_OPEN, LOWER_CLOSED, LOWER_SQUINT = 1.05, 1.20, 1.55


def make_lids() -> tuple[Part, dict[str, F64]]:
    parts_pos, parts_tri, parts_col = [], [], []
    morph: dict[str, list[F64]] = {}
    offset = 0
    chunks: list[tuple[float, bool, F64, F64]] = []
    for sx in (1.0, -1.0):
        c = EYE_C * [sx, 1, 1]
        for up in (True, False):
            frac, lon, tri = lid_shell(c, up, 1.0)
            span = UPPER_OPEN if up else LOWER_OPEN
            pos = lid_points(c, frac, lon, span, up)
            edge = smoothstep(0.75, 1.0, frac)
            col = (
                np.array(SKIN) * 0.93 * (1 - edge[:, None])
                + np.array([0.10, 0.06, 0.05]) * edge[:, None] * (1.0 if up else 0.4)
                + np.array(SKIN) * edge[:, None] * (0.0 if up else 0.6)
            )
            parts_pos.append(pos)
            parts_tri.append(tri + offset)
            parts_col.append(col)
            chunks.append((sx, up, frac, lon))
            offset += len(pos)
    pos_all = np.vstack(parts_pos)
    n = len(pos_all)
    for morph_base, spans in {
        "Eye_Blink": (UPPER_CLOSED, LOWER_CLOSED),
        "Eye_Squint": (UPPER_SQUINT, LOWER_SQUINT),
        "Eye_Wide": (UPPER_WIDE, LOWER_OPEN),
    }.items():
        for side_sx, suffix in ((1.0, "_L"), (-1.0, "_R")):
            d = np.zeros((n, 3))
            start = 0
            for sx, up, frac, lon in chunks:
                k = len(frac)
                if sx == side_sx:
                    c = EYE_C * [sx, 1, 1]
                    span = spans[0] if up else spans[1]
                    base = UPPER_OPEN if up else LOWER_OPEN
                    d[start : start + k] = lid_points(c, frac, lon, span, up) - lid_points(
                        c, frac, lon, base, up
                    )
                start += k
            morph.setdefault(morph_base + suffix, []).append(d)
    part = Part(
        "Eyelids", pos_all, np.vstack(parts_tri).astype(np.uint32), np.vstack(parts_col), "skin"
    )
    return part, {k: v[0] for k, v in morph.items()}


def make_brows() -> Part:
    pos_l, tris = [], []
    cols = []
    offset = 0
    for sx in (1.0, -1.0):
        n_u = 16
        u = np.linspace(0.0, 1.0, n_u)
        xs = sx * (0.011 + 0.046 * u)
        ys = 0.049 + 0.007 * np.sin(u * math.pi * 0.9) - 0.004 * u
        half = 0.0042 * (1.0 - 0.55 * u)
        pts = []
        for k in range(n_u):
            for s in (1.0, -1.0):
                x, y = xs[k], ys[k] + s * half[k]
                zz = RZ * math.sqrt(max(0.0, 1 - (x / RX) ** 2 - (y / RY) ** 2)) + 0.0045
                pts.append((x, y, zz))
        pos = np.array(pts)
        for k in range(n_u - 1):
            a, b = offset + 2 * k, offset + 2 * k + 2
            tris += (
                [(a, a + 1, b), (b, a + 1, b + 1)] if sx > 0 else [(a, b, a + 1), (b, b + 1, a + 1)]
            )
        pos_l.append(pos)
        cols.append(np.tile(np.array(BROW), (len(pos), 1)))
        offset += len(pos)
    return Part("Brows", np.vstack(pos_l), np.array(tris, np.uint32), np.vstack(cols), "brow")


# ---------------------------------------------------------------------------- morph shapes


def face_morphs(face: Part, m: dict[str, F64]) -> dict[str, F64]:
    p = face.pos
    x = p[:, 0]
    side, front, across, dy = m["side"], m["front"], m["across"], m["dy"]
    n = len(p)
    out: dict[str, F64] = {}
    mouth = gauss(p, [0, MOUTH_Y, RZ], [0.042, 0.024, 0.06]) * front
    up_lip = np.exp(-((np.maximum(dy, 0) / 0.010) ** 2)) * (side >= 0) * across * front
    lo_lip = np.exp(-((np.minimum(dy, 0) / 0.012) ** 2)) * (side <= 0) * across * front
    up_edge = np.exp(-((np.maximum(dy, 0) / 0.005) ** 2)) * (side >= 0) * across * front
    lo_edge = np.exp(-((np.minimum(dy, 0) / 0.006) ** 2)) * (side <= 0) * across * front
    lips = np.maximum(up_lip, lo_lip)
    left = smoothstep(-0.006, 0.006, x)
    right = 1.0 - left
    halves = {"_L": left, "_R": right}
    sign = {"_L": 1.0, "_R": -1.0}
    jaw = m["jaw"]

    def vec(w: F64, v: npt.ArrayLike) -> F64:
        out: F64 = w[:, None] * np.asarray(v, float)[None, :]
        return out

    def squeeze(w: F64, k: float) -> F64:
        """Pull toward the middle (x *= 1 - k * w)."""
        d = np.zeros((n, 3))
        d[:, 0] = -x * k * w
        return d

    for s, half in halves.items():
        sg = sign[s]
        corner = gauss(p, [sg * 0.031, MOUTH_Y, RZ], [0.016, 0.014, 0.06]) * front
        cheek = gauss(p, [sg * 0.045, -0.012, RZ], [0.020, 0.016, 0.06]) * front
        out["Mouth_Smile" + s] = vec(corner, [sg * 0.006, 0.012, -0.004]) + vec(
            cheek, [0, 0.004, 0.003]
        )
        out["Mouth_Frown" + s] = vec(corner, [sg * 0.002, -0.011, 0.0])
        out["Mouth_Stretch" + s] = vec(corner, [sg * 0.009, -0.003, -0.003])
        out["Mouth_Dimple" + s] = vec(corner, [sg * 0.003, 0.0, -0.006])
        out["Mouth_Press" + s] = vec(up_edge * half, [0, -0.0022, -0.002]) + vec(
            lo_edge * half, [0, 0.0022, -0.002]
        )
        out["Mouth_Tighten" + s] = vec(lips * half, [0, 0, -0.002]) + vec(
            corner, [-sg * 0.004, 0, 0]
        )
        out["Mouth_Up_Upper" + s] = vec(up_lip * half, [0, 0.006, 0.001])
        out["Mouth_Down_Lower" + s] = vec(lo_lip * half, [0, -0.007, 0.001])
        out["Mouth_Roll_In_Upper" + s] = vec(up_lip * half, [0, -0.0015, -0.006])
        out["Mouth_Roll_In_Lower" + s] = vec(lo_lip * half, [0, 0.0015, -0.006])
        out["Mouth_Pucker_Up" + s] = squeeze(up_lip * half, 0.45) + vec(
            up_lip * half, [0, 0, 0.011]
        )
        out["Mouth_Pucker_Down" + s] = squeeze(lo_lip * half, 0.45) + vec(
            lo_lip * half, [0, 0, 0.011]
        )
        out["Mouth_Funnel_Up" + s] = (
            squeeze(up_lip * half, 0.3)
            + vec(up_lip * half, [0, 0.002, 0.009])
            + vec(up_edge * half, [0, 0.004, 0])
        )
        out["Mouth_Funnel_Down" + s] = (
            squeeze(lo_lip * half, 0.3)
            + vec(lo_lip * half, [0, -0.002, 0.009])
            + vec(lo_edge * half, [0, -0.004, 0])
        )
        out["Cheek_Raise" + s] = vec(cheek, [0, 0.006, 0.004])
        out["Cheek_Puff" + s] = vec(cheek, [sg * 0.010, -0.002, 0.008])
        nose_side = gauss(p, [sg * 0.012, -0.004, RZ], [0.008, 0.010, 0.06]) * front
        out["Nose_Sneer" + s] = vec(nose_side, [0, 0.005, 0.001]) + vec(
            up_lip * half, [0, 0.002, 0]
        )
        crease = gauss(p, [sg * 0.022, -0.010, RZ], [0.006, 0.012, 0.06]) * front
        out["Nose_Crease" + s] = vec(crease, [-sg * 0.002, 0.002, -0.003])
    out["Mouth_L"] = vec(mouth, [0.010, 0, 0])
    out["Mouth_R"] = vec(mouth, [-0.010, 0, 0])
    out["Mouth_Shrug_Upper"] = vec(up_lip, [0, 0.004, 0.003])
    out["Mouth_Shrug_Lower"] = vec(lo_lip, [0, 0.006, 0.004])
    chin = gauss(p, [0, MOUTH_Y - 0.03, RZ], [0.025, 0.02, 0.06]) * front
    out["Mouth_Chin_Up"] = vec(chin, [0, 0.006, 0.004]) + vec(lo_lip, [0, 0.003, 0.002])
    out["Mouth_Close"] = vec(up_edge, [0, -0.005, 0]) + vec(lo_lip, [0, 0.011, 0.002])
    out["Jaw_Open"] = squeeze(lips, 0.12)
    out["Jaw_Forward"] = vec(jaw, [0, 0, 0.008])
    out["Jaw_L"] = vec(jaw, [0.009, 0, 0])
    out["Jaw_R"] = vec(jaw, [-0.009, 0, 0])
    # visemes (the jaw bone adds 18 degrees per unit of V_Open)
    out["V_Open"] = squeeze(lips, 0.12) + vec(up_edge, [0, 0.003, 0])
    # lips pressed together: the lower lip rises past the line (it also cancels a little jaw)
    out["V_Explosive"] = (
        vec(lips, [0, 0, -0.004])
        + vec(up_edge, [0, -0.002, 0])
        + vec(lo_lip, [0, 0.004, 0.001])
        + squeeze(lips, 0.08)
    )
    out["V_Dental_Lip"] = vec(up_edge, [0, 0.005, 0]) + vec(lo_lip, [0, 0.002, -0.007])
    out["V_Tight_O"] = (
        squeeze(lips, 0.5)
        + vec(lips, [0, 0, 0.012])
        + vec(up_edge, [0, 0.004, 0])
        + vec(lo_edge, [0, -0.004, 0])
    )
    out["V_Tight"] = squeeze(lips, 0.35) + vec(lips, [0, 0, 0.008])
    wide_c = np.zeros((n, 3))
    for s in ("_L", "_R"):
        sg = sign[s]
        corner = gauss(p, [sg * 0.031, MOUTH_Y, RZ], [0.016, 0.014, 0.06]) * front
        wide_c += vec(corner, [sg * 0.011, 0.001, -0.004])
    out["V_Wide"] = wide_c + vec(up_edge, [0, 0.0025, 0]) + vec(lo_edge, [0, -0.0025, 0])
    out["V_Affricate"] = (
        squeeze(lips, 0.22)
        + vec(lips, [0, 0, 0.008])
        + vec(up_edge, [0, 0.004, 0])
        + vec(lo_edge, [0, -0.004, 0])
    )
    out["V_Lip_Open"] = vec(up_edge, [0, 0.004, 0]) + vec(lo_edge, [0, -0.005, 0])
    return out


def brow_morphs(brows: Part) -> dict[str, F64]:
    p = brows.pos
    x = p[:, 0]
    out: dict[str, F64] = {}
    for s, sg in (("_L", 1.0), ("_R", -1.0)):
        mine = (x * sg > 0).astype(float)
        t = np.clip((np.abs(x) - 0.011) / 0.046, 0, 1)  # 0 inner .. 1 outer
        inner = (1 - t) ** 1.5 * mine
        outer = t**1.5 * mine
        z0 = np.zeros(len(p))
        out["Brow_Raise_Inner" + s] = np.stack([z0, 0.009 * inner, z0], 1)
        out["Brow_Raise_Outer" + s] = np.stack([z0, 0.009 * outer, z0], 1)
        out["Brow_Drop" + s] = np.stack([z0, -0.006 * mine - 0.002 * inner, -0.001 * mine], 1)
        out["Brow_Compress" + s] = np.stack([-sg * 0.005 * inner, -0.002 * inner, 0.001 * inner], 1)
    return out


def eye_morphs(eye: Part, sx: float) -> dict[str, F64]:
    c = EYE_C * [sx, 1, 1]
    rel = eye.pos - c
    side = "L" if sx > 0 else "R"
    out: dict[str, F64] = {}
    yaw, pitch = math.radians(28), math.radians(22)
    for name, r in (
        (f"Eye_{side}_Look_L", rot_y(yaw)),
        (f"Eye_{side}_Look_R", rot_y(-yaw)),
        (f"Eye_{side}_Look_Up", rot_x(-pitch)),
        (f"Eye_{side}_Look_Down", rot_x(pitch)),
    ):
        out[name] = rel @ r.T - rel
    return out


def tongue_morphs(tongue: Part) -> dict[str, F64]:
    p = tongue.pos
    c = np.array([0, MOUTH_Y - 0.016, 0.056])
    rel = p - c
    tip = smoothstep(-0.01, 0.025, rel[:, 2])
    back = 1 - tip
    z0 = np.zeros(len(p))
    out = {
        "Tongue_Out": np.stack([z0, 0.006 * tip - 0.004 * tip**2, 0.034 * tip + 0.006], 1),
        "V_Tongue_Out": np.stack([z0, 0.006 * tip, 0.020 * tip], 1),
        "V_Tongue_up": np.stack([z0, 0.016 * tip**2, 0.004 * tip], 1),
        "V_Tongue_Raise": np.stack([z0, 0.012 * back + 0.004, z0], 1),
        "V_Tongue_Narrow": np.stack([-0.4 * rel[:, 0], 0.002 * tip, 0.004 * tip], 1),
        "V_Tongue_Lower": np.stack([z0, z0 - 0.004, z0], 1),
        "V_Tongue_Curl_U": np.stack([z0, 0.014 * tip**2, -0.006 * tip**2], 1),
        "V_Tongue_Curl_D": np.stack([z0, -0.008 * tip**2, -0.004 * tip**2], 1),
    }
    return out


# ------------------------------------------------------------------------------- required


def required_morphs(rig_file: Path = RIG_FILE) -> list[str]:
    """Every cc4-extended morph that the arkit52, visemes and emotions mappings drive."""
    spec = json.loads(rig_file.read_text())
    names: set[str] = set()
    for vocab in ("arkit52", "visemes", "emotions"):
        for targets in spec["mappings"][vocab].values():
            names.update(targets)
    return sorted(names)


# ------------------------------------------------------------------------------- glTF writer


class Writer:
    def __init__(self) -> None:
        import pygltflib as g  # type: ignore[import-untyped]

        self.g = g
        self.gltf = g.GLTF2(
            asset=g.Asset(generator="avatar-engine tools/make_head.py", version="2.0")
        )
        self.blob = bytearray()

    def view(self, data: bytes, target: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        self.gltf.bufferViews.append(
            self.g.BufferView(
                buffer=0, byteOffset=len(self.blob), byteLength=len(data), target=target
            )
        )
        self.blob += data
        return len(self.gltf.bufferViews) - 1

    def accessor(
        self,
        arr: npt.NDArray[np.generic],
        kind: str,
        target: int | None = None,
        minmax: bool = False,
    ) -> int:
        g = self.g
        comp = {
            np.dtype(np.float32): g.FLOAT,
            np.dtype(np.uint32): g.UNSIGNED_INT,
            np.dtype(np.uint16): g.UNSIGNED_SHORT,
            np.dtype(np.uint8): g.UNSIGNED_BYTE,
        }[arr.dtype]
        count = arr.shape[0] if kind != "SCALAR" else arr.size
        acc = g.Accessor(
            bufferView=self.view(np.ascontiguousarray(arr).tobytes(), target),
            componentType=comp,
            count=count,
            type=kind,
        )
        if minmax:
            acc.min = [float(v) for v in arr.min(axis=0)]
            acc.max = [float(v) for v in arr.max(axis=0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def sparse_target(self, delta: F32) -> int:
        g = self.g
        moved = np.nonzero(np.abs(delta).max(axis=1) > 1e-6)[0].astype(np.uint32)
        if len(moved) == 0:
            moved = np.array([0], np.uint32)
        idx = self.view(moved.astype(np.uint32).tobytes())
        vals = self.view(np.ascontiguousarray(delta[moved]).tobytes())
        acc = g.Accessor(
            componentType=g.FLOAT,
            count=len(delta),
            type="VEC3",
            sparse=g.Sparse(
                count=len(moved),
                indices=g.AccessorSparseIndices(bufferView=idx, componentType=g.UNSIGNED_INT),
                values=g.AccessorSparseValues(bufferView=vals),
            ),
            min=[float(min(0.0, v)) for v in delta.min(axis=0)],
            max=[float(max(0.0, v)) for v in delta.max(axis=0)],
        )
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def node(self, name: str, **kw: object) -> int:
        self.gltf.nodes.append(self.g.Node(name=name, **kw))
        return len(self.gltf.nodes) - 1

    def child(self, parent: int, kid: int) -> None:
        self.gltf.nodes[parent].children.append(kid)


MATERIALS = {
    "skin": ((1, 1, 1, 1), 0.65, False),
    "cavity": ((1, 1, 1, 1), 1.0, False),
    "teeth": ((1, 1, 1, 1), 0.35, True),
    "tongue": ((1, 1, 1, 1), 0.5, False),
    "eye": ((1, 1, 1, 1), 0.15, False),
    "brow": ((1, 1, 1, 1), 0.9, True),
}


def build(rig_file: Path = RIG_FILE) -> tuple[bytes, dict[str, list[str]]]:
    """Build the GLB; returns its bytes and the morph names per mesh."""
    face, masks = make_face()
    face.morphs = face_morphs(face, masks)
    lids, lid_m = make_lids()
    lids.morphs = lid_m
    brows = make_brows()
    brows.morphs = brow_morphs(brows)
    eye_l, eye_r = make_eye(1.0), make_eye(-1.0)
    eye_l.morphs = eye_morphs(eye_l, 1.0)
    eye_r.morphs = eye_morphs(eye_r, -1.0)
    tongue = make_tongue()
    tongue.morphs = tongue_morphs(tongue)
    cavity = make_cavity()
    teeth_up = teeth_band(MOUTH_Y + 0.009, MOUTH_Y - 0.002, 0.080, "Teeth_Upper")
    teeth_lo = teeth_band(MOUTH_Y - 0.0035, MOUTH_Y - 0.012, 0.077, "Teeth_Lower")

    required = set(required_morphs(rig_file))
    have = set().union(*(p.morphs for p in (face, lids, brows, eye_l, eye_r, tongue)))
    missing = required - have
    if missing:
        raise SystemExit(f"make_head: no shape for {sorted(missing)}")

    w = Writer()
    g = w.g
    for name, (colour, rough, double) in MATERIALS.items():
        w.gltf.materials.append(
            g.Material(
                name=name,
                pbrMetallicRoughness=g.PbrMetallicRoughness(
                    baseColorFactor=list(colour), metallicFactor=0.0, roughnessFactor=rough
                ),
                doubleSided=double,
            )
        )
    mat_index = {name: i for i, name in enumerate(MATERIALS)}

    def mesh(part: Part) -> int:
        pos = part.pos.astype(np.float32)
        attrs = g.Attributes(
            POSITION=w.accessor(pos, "VEC3", g.ARRAY_BUFFER, minmax=True),
            NORMAL=w.accessor(normals(part.pos, part.tri), "VEC3", g.ARRAY_BUFFER),
            COLOR_0=w.accessor(part.color.astype(np.float32), "VEC3", g.ARRAY_BUFFER),
        )
        if part.joints is not None and part.weights is not None:
            attrs.JOINTS_0 = w.accessor(part.joints, "VEC4", g.ARRAY_BUFFER)
            attrs.WEIGHTS_0 = w.accessor(part.weights.astype(np.float32), "VEC4", g.ARRAY_BUFFER)
        names = sorted(part.morphs)
        targets = [
            g.Attributes(POSITION=w.sparse_target(part.morphs[n].astype(np.float32))) for n in names
        ]
        prim = g.Primitive(
            attributes=attrs,
            indices=w.accessor(
                part.tri.astype(np.uint32).ravel(), "SCALAR", g.ELEMENT_ARRAY_BUFFER
            ),
            material=mat_index[part.material],
            targets=targets,
        )
        m = g.Mesh(name=part.name, primitives=[prim])
        if names:
            m.extras = {"targetNames": names}
            m.weights = [0.0] * len(names)
        w.gltf.meshes.append(m)
        return len(w.gltf.meshes) - 1

    def rest_inverse(world_pos: F64, basis: F64) -> dict[str, list[float]]:
        """Child transform that cancels a parent's world rest pose (author in head space)."""
        inv = basis.T
        return {
            "rotation": quat(inv),
            "translation": [round(float(v), 7) + 0.0 for v in -(inv @ world_pos)],
        }

    root = w.node("Avatar")
    head = w.node("CC_Base_Head", translation=[float(v) for v in HEAD_PIVOT])
    w.child(root, head)
    jaw_world = JAW_PIVOT
    jaw = w.node(
        "CC_Base_JawRoot",
        translation=[float(v) for v in jaw_world - HEAD_PIVOT],
        rotation=quat(JAW_BASIS),
    )
    w.child(head, jaw)
    teeth2 = w.node("CC_Base_Teeth02")
    tongue1 = w.node("CC_Base_Tongue01", translation=[0.0, 0.0, 0.0])
    w.child(jaw, teeth2)
    w.child(jaw, tongue1)
    for part, parent, ppos, basis in (
        (teeth_lo, teeth2, jaw_world, JAW_BASIS),
        (tongue, tongue1, jaw_world, JAW_BASIS),
    ):
        w.child(parent, w.node(part.name, mesh=mesh(part), **rest_inverse(ppos, basis)))
    for eye, sx, bone_name in ((eye_l, 1.0, "CC_Base_L_Eye"), (eye_r, -1.0, "CC_Base_R_Eye")):
        c = EYE_C * [sx, 1, 1]
        bone = w.node(
            bone_name, translation=[float(v) for v in c - HEAD_PIVOT], rotation=quat(EYE_BASIS)
        )
        w.child(head, bone)
        w.child(bone, w.node(eye.name, mesh=mesh(eye), **rest_inverse(c, EYE_BASIS)))
    ident = np.eye(3)
    for part in (lids, brows, teeth_up):
        w.child(head, w.node(part.name, mesh=mesh(part), **rest_inverse(HEAD_PIVOT, ident)))
    # neck: static, under the root
    neck_pos, neck_tri = ellipsoid([0, -0.18, -0.025], [0.052, 0.11, 0.047], 12, 24)
    neck = Part(
        "Neck", neck_pos, neck_tri, np.tile(np.array(SKIN) * 0.9, (len(neck_pos), 1)), "skin"
    )
    w.child(root, w.node("Neck", mesh=mesh(neck)))
    # the skinned meshes: joints [head, jaw]; bind matrices are the inverses of their rest poses
    ibm = []
    for world_pos, basis in ((HEAD_PIVOT, ident), (jaw_world, JAW_BASIS)):
        mtx = np.eye(4)
        mtx[:3, :3] = basis
        mtx[:3, 3] = world_pos
        ibm.append(np.linalg.inv(mtx).T.astype(np.float32))  # glTF is column-major
    skin_acc = w.accessor(np.stack(ibm).reshape(2, 16), "MAT4")
    w.gltf.skins.append(
        g.Skin(name="Face", joints=[head, jaw], inverseBindMatrices=skin_acc, skeleton=head)
    )
    for part in (face, cavity):
        w.child(root, w.node(part.name, mesh=mesh(part), skin=0))
    w.gltf.scenes.append(g.Scene(name="Head", nodes=[root]))
    w.gltf.scene = 0
    w.gltf.buffers.append(g.Buffer(byteLength=len(w.blob)))
    w.gltf.set_binary_blob(bytes(w.blob))
    data = b"".join(w.gltf.save_to_bytes())
    per_mesh = {m.name: list((m.extras or {}).get("targetNames", [])) for m in w.gltf.meshes}
    return data, per_mesh


def read_targets(glb: bytes) -> dict[str, dict[str, F32]]:
    """Dense morph deltas per mesh and target name, read back from a GLB (for --check/tests)."""
    import pygltflib as g

    gltf = g.GLTF2.load_from_bytes(glb)
    blob = gltf.binary_blob() or b""

    def view(i: int) -> bytes:
        bv = gltf.bufferViews[i]
        return blob[bv.byteOffset or 0 : (bv.byteOffset or 0) + bv.byteLength]

    out: dict[str, dict[str, F32]] = {}
    for m in gltf.meshes:
        names = (m.extras or {}).get("targetNames", [])
        prim = m.primitives[0]
        for name, tgt in zip(names, prim.targets, strict=True):
            acc = gltf.accessors[tgt["POSITION"] if isinstance(tgt, dict) else tgt.POSITION]
            dense = np.zeros((acc.count, 3), np.float32)
            sp = acc.sparse
            idx = np.frombuffer(view(sp.indices.bufferView), np.uint32, sp.count)
            vals = np.frombuffer(view(sp.values.bufferView), np.float32, sp.count * 3).reshape(
                -1, 3
            )
            dense[idx] = vals
            out.setdefault(m.name or "", {})[name] = dense
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    ap.add_argument(
        "--check", action="store_true", help="compare with the file instead of writing it"
    )
    args = ap.parse_args(argv)
    data, per_mesh = build()
    if args.check:
        if not args.output.exists():
            print(f"{args.output}: missing", file=sys.stderr)
            return 1
        on_disk = read_targets(args.output.read_bytes())
        fresh = read_targets(data)
        problems = [
            f"{m}/{n}"
            for m, t in fresh.items()
            for n in t
            if m not in on_disk
            or n not in on_disk[m]
            or not np.allclose(on_disk[m][n], t[n], atol=1e-5)
        ]
        if problems:
            print(f"{args.output} is stale: {problems[:8]}", file=sys.stderr)
            return 1
        print(f"{args.output}: up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    total = sum(len(v) for v in per_mesh.values())
    print(f"wrote {args.output} ({len(data)} bytes, {total} targets over {len(per_mesh)} meshes)")
    for name, targets in per_mesh.items():
        if targets:
            print(f"  {name}: {len(targets)} targets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
