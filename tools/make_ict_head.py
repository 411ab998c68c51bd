"""Build the default demo head from the ICT Face Model Light (USC ICT, MIT licence).

    python tools/make_ict_head.py ICT_DIR [-o src/avatar_engine/web/ict-head.glb] [--check]

ICT_DIR is the unpacked model (``generic_neutral_mesh.obj``, the expression shapes
``eyeBlink_L.obj`` ..., all in one topology of 26,719 vertices; see
``src/avatar_engine/web/ICT-FaceKit-LICENSE.txt`` for its licence and credits). The project
never reads the model at run time: it ships only the GLB this script writes.

What the GLB holds (metres, +y up, the face looks down +z, the character's left is +x):

* Meshes, one per material, each carrying only the morph targets that move it: ``Face``
  (skin of face, scalp, neck, mouth and eye sockets, coloured per vertex: lips, brows, cheeks,
  the mouth's inside), ``Teeth``, ``GumsTongue``, ``Eye_L``/``Eye_R`` (sclera and iris; the
  pupil is the hole in the iris, backed by a dark inner sphere), ``Cornea_L``/``Cornea_R``
  (the clear front of the sclera mesh, glossy and nearly transparent), ``Lacrimal`` (the wet
  line along the lids), ``EyeOcclusion`` (a soft shadow where the lids meet the eyeball),
  ``Eyelashes`` (strips fading from root to tip), plus two made here: ``Cap`` (a knitted cap
  with a folded cuff, a shell that stands off the scalp) and ``Sweater`` (shoulders and chest
  around the neck, closed at the bottom, its collar hiding the neck's open edge).
* Morph targets named as ARKit's 52 blendshapes (the ``ict-arkit`` rig profile). The model's
  ``_L``/``_R`` shapes are the character's own left/right, like ARKit's ``Left``/``Right``.
  Made by this script: ``browInnerUp`` and ``cheekPuff`` (ARKit keeps them whole: the sum of
  the model's ``_L`` and ``_R`` shapes) and ``tongueOut`` (the model has none: the tongue
  slides forward and down, its tip most, its root not at all). Left out: ``cheekRaiser_L/_R``
  (no ARKit twin) and ``PupilDilate_L/_R``.
  Targets are sparse accessors (only the vertices a target moves) with int16 normalised
  values (KHR_mesh_quantization; 1/32767 m = 0.03 mm steps), so the file stays small.
* A skin with joints ``Neck`` (root), ``Head`` (the head channels turn it; the neck blends
  between the two) and ``LeftEye``/``RightEye`` at the eyeball centres (the eye channels turn
  the eyeballs; the model's ``eyeLook*`` shapes move only the lids).
* Scene extras the demo page reads: ``frame`` (camera target and radius) and ``regions``
  (head-space points whose screen boxes are the mouth and the eyes, for the browser tests).

The output is a pure function of the model files and this script (``--check`` rebuilds in
memory and compares with the file on disk, byte for byte).
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar_engine.rigs.arkit import ARKIT_NAMES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "avatar_engine" / "web" / "ict-head.glb"

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

CM = 0.01  # the model is in centimetres

# Vertex ranges of the model's parts (README.upstream.md, "Face Model Topology"), [start, end).
PARTS = {
    "face": (0, 9409),
    "head": (9409, 11248),
    "mouth_socket": (11248, 13294),
    "eye_socket_l": (13294, 13678),
    "eye_socket_r": (13678, 14062),
    "gums_tongue": (14062, 17039),
    "teeth": (17039, 21451),
    "sclera_l": (21451, 22221),
    "iris_l": (22221, 23021),
    "sclera_r": (23021, 23791),
    "iris_r": (23791, 24591),
    "lacrimal_l": (24591, 24795),
    "lacrimal_r": (24795, 24999),
    "eye_blend_l": (24999, 25023),
    "eye_blend_r": (25023, 25047),
    "occlusion_l": (25047, 25199),
    "occlusion_r": (25199, 25351),
    "lashes_l": (25351, 26035),
    "lashes_r": (26035, 26719),
}

ARKIT52 = ARKIT_NAMES  # Apple/Live Link order; tongueOut is last

HEAD_PIVOT = np.array([0.0, -6.0, -1.5]) * CM  # about the top of the neck (atlas)
NECK_ROOT = np.array([0.0, -17.0, -1.0]) * CM
# A target goes on a mesh only if it moves some vertex of it this far (metres): the model's
# shapes carry sub-0.1 mm noise far from where they act, and every target on a mesh costs
# every vertex of it a texture fetch per frame in three.js, whatever its weight.
MESH_TARGET_MIN = 1.5e-4
Q = 32767.0  # int16 normalised: 1.0 m = 32767


def srgb(r: int, g: int, b: int) -> F64:
    """An sRGB colour picked by eye, as linear RGB (glTF vertex colours are linear)."""
    c = np.array([r, g, b], float) / 255.0
    out: F64 = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return out


def smoothstep(e0: float, e1: float, x: F64) -> F64:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    out: F64 = t * t * (3.0 - 2.0 * t)
    return out


def hash_noise(p: F64, scale: float, seed: int) -> F64:
    """Smooth-ish deterministic value noise in [-1, 1] (sum of a few sines), for colour grain."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(6, 3))
    phases = rng.uniform(0, 2 * np.pi, 6)
    out: F64 = np.sin((p / scale) @ dirs.T + phases).mean(axis=1) * 1.6
    return np.clip(out, -1.0, 1.0)


# ------------------------------------------------------------------ reading the model

_V = re.compile(rb"^v (\S+) (\S+) (\S+)", re.M)


def read_vertices(path: Path) -> F64:
    """The ``v`` lines of an OBJ file, in metres."""
    rows = _V.findall(path.read_bytes())
    return np.array(rows, dtype=np.float64) * CM


def read_faces(path: Path) -> list[list[int]]:
    """The polygons of an OBJ file (0-based vertex indices, any texture/normal indices dropped)."""
    faces = []
    for line in path.read_bytes().splitlines():
        if line.startswith(b"f "):
            faces.append([int(tok.split(b"/")[0]) - 1 for tok in line.split()[1:]])
    return faces


def triangles(faces: list[list[int]], lo: int, hi: int) -> I64:
    """Fan-triangulate the polygons whose first vertex lies in [lo, hi)."""
    out = [(f[0], f[k], f[k + 1]) for f in faces if lo <= f[0] < hi for k in range(1, len(f) - 1)]
    return np.array(out, dtype=np.int64).reshape(-1, 3)


@dataclass
class Model:
    neutral: F64
    faces: list[list[int]]
    shapes: dict[str, F64]  # ICT name -> delta from neutral (metres)


def read_model(folder: Path) -> Model:
    neutral = read_vertices(folder / "generic_neutral_mesh.obj")
    shapes = {}
    for name in sorted(ict_sources()):
        shapes[name] = read_vertices(folder / f"{name}.obj") - neutral
    return Model(neutral, read_faces(folder / "generic_neutral_mesh.obj"), shapes)


def ict_sources() -> set[str]:
    """The model's shape files this script reads."""
    out = set()
    for name in ARKIT52:
        out.update(ict_names(name))
    return out


def ict_names(arkit: str) -> list[str]:
    """The ICT shapes whose sum is one ARKit shape ([] for tongueOut, which is made here)."""
    if arkit == "tongueOut":
        return []
    if arkit in ("browInnerUp", "cheekPuff"):
        return [f"{arkit}_L", f"{arkit}_R"]
    if arkit in ("jawLeft", "jawRight", "mouthLeft", "mouthRight"):  # directions, not sides
        return [arkit]
    for side, suffix in (("Left", "_L"), ("Right", "_R")):
        if arkit.endswith(side):
            return [arkit[: -len(side)] + suffix]
    return [arkit]


# ------------------------------------------------------------------ geometry helpers


def vertex_normals(pos: F64, tri: I64) -> F64:
    """Area-weighted vertex normals, shared by vertices at one position (UV seams)."""
    n = np.zeros_like(pos)
    fn = np.cross(pos[tri[:, 1]] - pos[tri[:, 0]], pos[tri[:, 2]] - pos[tri[:, 0]])
    for k in range(3):
        np.add.at(n, tri[:, k], fn)
    _, weld = np.unique(np.round(pos / 1e-6).astype(np.int64), axis=0, return_inverse=True)
    summed = np.zeros((weld.max() + 1, 3))
    np.add.at(summed, weld.reshape(-1), n)
    n = summed[weld.reshape(-1)]
    length = np.linalg.norm(n, axis=1, keepdims=True)
    out: F64 = n / np.maximum(length, 1e-12)
    return out


def components(tri: I64, n: int) -> I64:
    """Connected-component label of every vertex (union-find over triangle edges)."""
    parent = np.arange(n)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = int(parent[a])
        return a

    for a, b, c in tri:
        for u, v in ((a, b), (b, c)):
            ru, rv = find(int(u)), find(int(v))
            if ru != rv:
                parent[max(ru, rv)] = min(ru, rv)
    return np.array([find(i) for i in range(n)])


def sphere_fit(p: F64) -> tuple[F64, float]:
    a = np.c_[2 * p, np.ones(len(p))]
    c = np.linalg.lstsq(a, (p**2).sum(axis=1), rcond=None)[0]
    return c[:3], float(np.sqrt(c[3] + (c[:3] ** 2).sum()))


def grid_triangles(rows: int, cols: int, wrap: bool = True) -> I64:
    """Quads of a rows x cols vertex grid (columns wrap around), as triangles."""
    out = []
    for r in range(rows - 1):
        for c in range(cols if wrap else cols - 1):
            a, b = r * cols + c, r * cols + (c + 1) % cols
            d, e = a + cols, b + cols
            out += [(a, d, b), (b, d, e)]
    return np.array(out, dtype=np.int64)


# ------------------------------------------------------------------ parts


@dataclass
class Part:
    """One glTF mesh: its own vertices, triangles, colours, skin weights and targets."""

    name: str
    material: str
    pos: F64
    tri: I64
    color: F64  # (n, 4) linear RGBA
    joints: npt.NDArray[np.uint8]  # (n, 4)
    weights: F64  # (n, 4)
    normal: F64 | None = None
    targets: dict[str, F64] = field(default_factory=dict)


JOINTS = ("Neck", "Head", "LeftEye", "RightEye")


def head_weights(pos: F64) -> tuple[npt.NDArray[np.uint8], F64]:
    """Neck (0) below, Head (1) above, blended over the neck."""
    w = smoothstep(-0.12, -0.04, pos[:, 1])
    joints = np.zeros((len(pos), 4), np.uint8)
    joints[:, 1] = 1
    weights = np.zeros((len(pos), 4))
    weights[:, 0] = 1 - w
    weights[:, 1] = w
    return joints, weights


def rigid(n: int, joint: int) -> tuple[npt.NDArray[np.uint8], F64]:
    joints = np.zeros((n, 4), np.uint8)
    joints[:, 0] = joint
    weights = np.zeros((n, 4))
    weights[:, 0] = 1.0
    return joints, weights


def subset(
    model: Model,
    deltas: dict[str, F64],
    name: str,
    material: str,
    ranges: list[str],
    color: F64,
    weights: tuple[npt.NDArray[np.uint8], F64] | None = None,
    hide: npt.NDArray[np.bool_] | None = None,
) -> Part:
    """A part made of the model's vertex ranges, with the targets that move it. Triangles whose
    vertices are all in `hide` (over the part's vertices) are left out, and vertices no
    triangle uses with them; normals are those of the whole part."""
    idx = np.concatenate([np.arange(*PARTS[r]) for r in ranges])
    tri = np.concatenate([triangles(model.faces, *PARTS[r]) for r in ranges])
    remap = np.full(len(model.neutral), -1)
    remap[idx] = np.arange(len(idx))
    local = remap[tri]
    assert (local >= 0).all(), f"{name}: a triangle leaves the part"
    normal = vertex_normals(model.neutral[idx], local)
    keep = np.arange(len(idx))
    if hide is not None:
        local = local[~hide[local].all(axis=1)]
        keep = np.unique(local)
        compact = np.full(len(idx), -1)
        compact[keep] = np.arange(len(keep))
        local = compact[local]
    idx, color = idx[keep], color[keep]
    pos = model.neutral[idx]
    if weights is None:
        joints, w = head_weights(pos)
    else:
        joints, w = weights[0][keep], weights[1][keep]
    targets = {}
    for arkit, d in deltas.items():
        dd = d[idx]
        if np.abs(dd).max() >= MESH_TARGET_MIN:
            targets[arkit] = dd
    return Part(name, material, pos, local, color, joints, w, normal[keep], targets)


def arkit_deltas(model: Model) -> dict[str, F64]:
    out = {}
    for name in ARKIT52:
        srcs = ict_names(name)
        if srcs:
            out[name] = sum((model.shapes[s] for s in srcs), np.zeros_like(model.neutral))
        else:
            out[name] = tongue_out(model)
    return out


def tongue_vertices(model: Model) -> I64:
    """The tongue: the component of the gums-and-tongue part that reaches furthest back/down
    in the middle (the gums are two arches, the tongue one body on the midline)."""
    lo, hi = PARTS["gums_tongue"]
    tri = triangles(model.faces, lo, hi) - lo
    label = components(tri, hi - lo)
    best, best_score = -1, -np.inf
    for lab in np.unique(label):
        members = np.nonzero(label == lab)[0]
        p = model.neutral[lo + members]
        # on the midline, wide, and low: the tongue's centroid sits near x = 0, below the gums
        score = len(members) - 4000 * abs(p[:, 0].mean()) / CM
        if score > best_score and len(members) > 200:
            best, best_score = lab, score
    return lo + np.nonzero(label == best)[0]


def tongue_out(model: Model) -> F64:
    """tongueOut, made here: the tongue slides 2.6 cm forward and 0.6 cm down at its tip,
    fading to nothing at its root, and flattens a little (wider, thinner) as it comes out."""
    d = np.zeros_like(model.neutral)
    t = tongue_vertices(model)
    p = model.neutral[t]
    z0, z1 = p[:, 2].min(), p[:, 2].max()
    f = smoothstep(0.0, 1.0, (p[:, 2] - z0) / (z1 - z0)) ** 1.5
    d[t, 2] = 2.6 * CM * f
    d[t, 1] = -0.6 * CM * f
    d[t, 0] = 0.12 * p[:, 0] * f
    return d


# ------------------------------------------------------------------ colours


def skin_colours(pos: F64, lm: dict[str, F64]) -> F64:
    """Skin, lips, brows and cheek flush, by position on the neutral face."""
    base = srgb(214, 160, 132)
    col = np.tile(base, (len(pos), 1))
    x, y, z = (pos[:, k] / CM for k in range(3))
    # lips: an ellipse around the mouth, flatter above (upper lip) than below
    my = lm["mouth"][1] / CM
    dy = np.where(y > my, (y - my) / 0.95, (y - my) / 1.15)
    lip = 1 - smoothstep(0.75, 1.05, np.sqrt((x / 2.75) ** 2 + dy**2))
    lip *= smoothstep(8.5, 10.0, z)
    col = col * (1 - lip[:, None]) + srgb(170, 88, 86) * lip[:, None]
    # cheeks and nose tip: a little flush
    for cx in (-4.2, 4.2):
        g = np.exp(-(((x - cx) / 2.2) ** 2 + ((y + 0.5) / 1.8) ** 2))
        col = col * (1 - 0.22 * g[:, None]) + srgb(200, 120, 110) * 0.22 * g[:, None]
    g = np.exp(-((x / 1.2) ** 2 + ((y - 0.3) / 1.2) ** 2)) * smoothstep(11.5, 12.8, z)
    col = col * (1 - 0.18 * g[:, None]) + srgb(205, 125, 112) * 0.18 * g[:, None]
    # brows: a soft band above each eye, thicker at the inner end
    for sx in (-1, 1):
        u = (sx * x - 1.2) / 4.6  # 0 at the inner end, 1 at the outer end
        centre = 5.7 + 0.55 * np.sin(np.clip(u, 0, 1) * np.pi * 0.8) - 0.5 * np.clip(u, 0, 1)
        half = 0.55 - 0.28 * np.clip(u, 0, 1)
        band = (1 - smoothstep(0.6, 1.0, np.abs(y - centre) / half)) * (
            smoothstep(-0.12, 0.05, u) * (1 - smoothstep(0.9, 1.08, u))
        )
        band *= smoothstep(6.0, 7.5, z) * (sx * x > 0)
        grain = 0.75 + 0.25 * hash_noise(pos, 0.0025, 7 + sx)
        a = np.clip(band * grain, 0, 1) * 0.85
        col = col * (1 - a[:, None]) + srgb(58, 40, 30) * a[:, None]
    # a faint stubble shadow on the upper lip and chin, and grain everywhere
    col *= 1 + 0.035 * hash_noise(pos, 0.004, 3)[:, None]
    # the neck and scalp a shade darker than the face (less light reaches them)
    col *= (0.92 + 0.08 * smoothstep(-12.0, -6.0, y))[:, None]
    return col


def rgba(c: F64, alpha: float | F64 = 1.0) -> F64:
    a = np.broadcast_to(np.asarray(alpha, float), (len(c),))
    return np.c_[c, a]


def tint(n: int, c: F64) -> F64:
    return np.tile(c, (n, 1))


# ------------------------------------------------------------------ made parts: cap, sweater


CAP_CENTRE = np.array([0.0, 3.5, -0.8]) * CM  # the cap's grid of directions starts here
NECK_AXIS_Z = -0.8 * CM  # the sweater's rows are built around the vertical line x=0, z=this


def cap_edge_y(phi: F64) -> F64:
    """Height of the cap's lower edge by longitude about CAP_CENTRE (0 = front, pi/2 = the
    character's left): 2.5 cm above the brows in front, above the ears, low at the back."""
    out: F64 = (4.0 + 4.4 * np.cos(phi) - 0.5 * np.cos(2 * phi)) * CM
    return out


def collar_y(u: F64) -> F64:
    """Height of the sweater's collar line by direction around the neck (lower in front)."""
    out: F64 = (-11.0 - 1.8 * (1 + np.cos(u)) / 2) * CM
    return out


def hidden_skin(p: F64) -> npt.NDArray[np.bool_]:
    """Skin vertices that the cap or the sweater cover by a margin: their triangles are not
    drawn (every vertex costs per frame, and a software-GL page feels it)."""
    phi = np.arctan2(p[:, 0] - CAP_CENTRE[0], p[:, 2] - CAP_CENTRE[2])
    under_cap = p[:, 1] > cap_edge_y(phi) + 1.2 * CM
    u = np.arctan2(p[:, 0], p[:, 2] - NECK_AXIS_Z)
    under_sweater = p[:, 1] < collar_y(u) - 1.5 * CM
    out: npt.NDArray[np.bool_] = under_cap | under_sweater
    return out


def cap_part(face: Part) -> Part:
    """A knitted cap: a shell 6 mm off the scalp (8 mm of fold at the cuff, with ribs), its edge
    tucked into the skin so no gap shows. Built on a grid of longitudes around a centre in the
    skull, the shell's radius in each direction is the skin's (ears left out), smoothed."""
    centre = CAP_CENTRE
    skin = face.pos
    rel = skin - centre
    x, y, z = (skin[:, k] / CM for k in range(3))
    ears = (np.abs(x) > 6.8) & (y < 5.5) & (y > -4.5) & (z < 4.0)
    keep = (~ears) & (y > -6.0) & (z < 11.5)
    rel = rel[keep]
    r_s = np.linalg.norm(rel, axis=1)
    dirs = rel / r_s[:, None]
    n_lon, n_row = 96, 30
    phi = np.arange(n_lon) * 2 * np.pi / n_lon  # 0 = front (+z), pi/2 = the character's left
    # the cuff's lower edge: 2.5 cm above the brows in front, above the ears, low at the back
    y_edge = cap_edge_y(phi)
    # 0 at the crown, 1 at the edge (per longitude); rows closer together at the cuff
    theta = np.r_[np.linspace(0, 0.76, n_row - 12), np.linspace(0.78, 1.0, 12)]
    pts = np.zeros((n_row, n_lon, 3))
    radius = np.zeros((n_row, n_lon))
    for j, ph in enumerate(phi):
        # find the polar angle where the skin surface drops below y_edge
        angles = np.linspace(0.0, np.pi * 0.85, 200)
        d = np.stack([np.sin(angles) * np.sin(ph), np.cos(angles), np.sin(angles) * np.cos(ph)], 1)
        r_d = surface_radius(dirs, r_s, d)
        yy = centre[1] + r_d * d[:, 1]
        stop = int(np.argmax(yy < y_edge[j])) if (yy < y_edge[j]).any() else len(angles) - 1
        th = theta * angles[stop]
        d = np.stack([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)], 1)
        radius[:, j] = surface_radius(dirs, r_s, d)
        pts[:, j] = d
    # smooth the radius field (ears and noise), then stand off the scalp
    for _ in range(6):
        radius = 0.5 * radius + 0.125 * (
            np.roll(radius, 1, 1)
            + np.roll(radius, -1, 1)
            + np.vstack([radius[:1], radius[:-1]])
            + np.vstack([radius[1:], radius[-1:]])
        )
    cuff = smoothstep(0.80, 0.83, theta)[:, None]
    ribs = 0.0009 * np.abs(np.sin(phi * 24))[None, :] * cuff
    shell = radius + 0.006 + 0.004 * cuff + ribs
    shell[0, :] = shell[0, :].mean()
    ring = pts * shell[..., None] + centre
    # tuck the edge: one more row that goes back into the skin
    tuck = pts[-1] * (radius[-1] - 0.003)[:, None] + centre
    grid = np.concatenate([ring, tuck[None]], axis=0)
    rows = grid.shape[0]
    pos = grid.reshape(-1, 3)
    tri = grid_triangles(rows, n_lon)
    # knit: stitches in the body (vertex colour), a darker fold line
    base = srgb(58, 70, 84)
    tpos = np.repeat(np.r_[theta, 1.0][:, None], n_lon, 1).reshape(-1)
    ppos = np.tile(phi, rows)
    stitch = 0.5 + 0.5 * np.sin(ppos * 48) * np.sin(tpos * 110)
    shade = 0.9 + 0.12 * stitch - 0.25 * np.exp(-(((tpos - 0.815) / 0.012) ** 2))
    col = base * shade[:, None]
    joints, weights = rigid(len(pos), 1)
    return Part("Cap", "cap", pos, tri, rgba(col), joints, weights)


def surface_radius(dirs: F64, r_s: F64, d: F64) -> F64:
    """For each direction in d, the largest skin radius among vertices within ~7 degrees."""
    cos = d @ dirs.T  # (m, n)
    near = cos > np.cos(np.radians(7.0))
    r = np.where(near, r_s[None, :], 0.0).max(axis=1)
    # fall back to the nearest direction where the cone is empty
    empty = r == 0
    if empty.any():
        r[empty] = r_s[np.argmax(cos[empty], axis=1)]
    out: F64 = r
    return out


def sweater_part(face: Part) -> Part:
    """Shoulders and chest in a crew-neck sweater. Rows hang from a collar line around the neck
    (lower in front); in each row and direction around the neck the surface lies just outside
    the skin (the model's neck flares into the top of the shoulders) or on a superellipse
    torso profile, whichever is larger. Closed at the bottom."""
    skin = face.pos / CM
    n_lon = 120
    u = np.arange(n_lon) * 2 * np.pi / n_lon  # 0 = front (+z), pi/2 = the character's left
    cz = NECK_AXIS_Z / CM
    y_top = collar_y(u) / CM
    # (drop below the collar line in cm, half-width, half-depth, superellipse power)
    profile = [
        (0.0, 0.0, 0.0, 2.0),
        (0.7, 0.0, 0.0, 2.0),
        (1.4, 0.0, 0.0, 2.0),
        (2.2, 9.0, 6.5, 2.2),
        (3.2, 12.5, 7.8, 2.4),
        (4.5, 15.0, 8.8, 2.6),
        (6.0, 17.0, 9.6, 2.8),
        (8.0, 18.4, 10.1, 3.0),
        (10.5, 19.2, 10.4, 3.0),
        (14.0, 19.4, 10.6, 3.0),
        (20.0, 19.0, 10.6, 3.0),
        (34.0, 18.4, 10.6, 3.0),
    ]
    rel = skin - np.array([0.0, 0.0, cz])
    ang = np.arctan2(rel[:, 0], rel[:, 2])
    rad = np.hypot(rel[:, 0], rel[:, 2])
    rows = []
    for k, (drop, a, b, power) in enumerate(profile):
        yy = y_top - drop
        cu, su = np.cos(u), np.sin(u)
        if a > 0:
            # radius of the superellipse |x/a|^p + |z/b|^p = 1 along direction u
            r_prof = 1.0 / ((np.abs(su) / a) ** power + (np.abs(cu) / b) ** power) ** (1 / power)
        else:
            r_prof = np.zeros(n_lon)
        r_skin = np.zeros(n_lon)
        for j in range(n_lon):
            near = (np.abs(skin[:, 1] - yy[j]) < 0.7) & (
                np.abs(np.angle(np.exp(1j * (ang - u[j])))) < np.radians(5)
            )
            if near.any():
                r_skin[j] = rad[near].max()
        off = 0.75 if k <= 2 else 0.45
        r = np.maximum(np.where(r_skin > 0, r_skin + off, 0), r_prof)
        rows.append((r, yy))
    # fill directions where neither skin nor profile gave a radius (the collar rows): neighbours
    radius = np.stack([r for r, _ in rows])
    for k in range(len(radius)):
        row = radius[k]
        if (row == 0).any():
            good = np.nonzero(row > 0)[0]
            row[row == 0] = np.interp(np.nonzero(row == 0)[0], good, row[good], period=n_lon)
    for _ in range(3):  # smooth around each row
        radius = 0.5 * radius + 0.25 * (np.roll(radius, 1, 1) + np.roll(radius, -1, 1))
    grid = (
        np.stack(
            [
                np.c_[radius[k] * np.sin(u), yy, radius[k] * np.cos(u) + cz]
                for k, (_, yy) in enumerate(rows)
            ]
        )
        * CM
    )
    # the collar's inner lip folds into the neck
    inner = grid[0].copy()
    inner[:, [0, 2]] = (inner[:, [0, 2]] - [0, cz * CM]) * 0.9 + [0, cz * CM]
    inner[:, 1] -= 0.3 * CM
    grid = np.concatenate([inner[None], grid])
    pos = grid.reshape(-1, 3)
    tri = grid_triangles(len(grid), n_lon)
    bottom = len(pos)
    pos = np.vstack([pos, grid[-1].mean(axis=0)])
    last = (len(grid) - 1) * n_lon
    fan = [(last + (k + 1) % n_lon, last + k, bottom) for k in range(n_lon)]
    tri = np.vstack([tri, np.array(fan)])
    base = srgb(78, 92, 80)
    ridx = np.repeat(np.arange(len(grid)), n_lon)
    uu = np.tile(u, len(grid))
    collar = (ridx <= 3).astype(float)
    knit = 0.93 + 0.07 * np.sin(uu * 90) * (0.4 + 0.6 * collar)
    shade = np.r_[knit * (1 - 0.1 * collar), 1.0]
    col = base * shade[:, None]
    joints, weights = rigid(len(pos), 0)
    return Part("Sweater", "cloth", pos, tri, rgba(col), joints, weights)


# ------------------------------------------------------------------ the eyes


def eye_parts(model: Model, side: str) -> tuple[Part, Part]:
    """Sclera + iris (opaque) and the cornea (the clear front of the sclera mesh)."""
    s_lo, s_hi = PARTS[f"sclera_{side}"]
    i_lo, i_hi = PARTS[f"iris_{side}"]
    centre, _ = sphere_fit(model.neutral[s_lo:s_hi])
    axis = model.neutral[i_lo:i_hi].mean(axis=0) - centre
    axis /= np.linalg.norm(axis)
    joint = 2 if side == "l" else 3

    def polar(p: F64) -> tuple[F64, F64]:
        d = p - centre
        h = d @ axis
        return np.linalg.norm(d - np.outer(h, axis), axis=1), h

    s_tri = triangles(model.faces, s_lo, s_hi)
    r, h = polar(model.neutral[s_lo:s_hi])
    clear = (r < 0.64 * CM) & (h > 0)
    is_cornea = clear[s_tri - s_lo].all(axis=1)
    i_tri = triangles(model.faces, i_lo, i_hi)
    # eyeball: sclera faces that are not cornea, plus the iris
    idx = np.r_[np.arange(s_lo, s_hi), np.arange(i_lo, i_hi)]
    remap = np.full(len(model.neutral), -1)
    remap[idx] = np.arange(len(idx))
    tri = remap[np.vstack([s_tri[~is_cornea], i_tri])]
    pos = model.neutral[idx]
    rr, hh = polar(pos)
    n_s = s_hi - s_lo
    col = np.zeros((len(idx), 3))
    # sclera: white, warmer and darker away from the front
    front = smoothstep(-0.2 * CM, 1.2 * CM, hh[:n_s])
    col[:n_s] = srgb(196, 170, 160) * (1 - front[:, None]) + srgb(238, 232, 226) * front[:, None]
    # iris: hazel-brown fibres, a dark limbal ring, a dark pupil hole and a black inner sphere
    ri, hi_ = rr[n_s:], hh[n_s:]
    ang = np.arctan2(*(pos[n_s:] - centre)[:, :2].T)
    fibres = 0.8 + 0.2 * np.sin(ang * 23) * np.sin(ang * 7 + 1.3)
    iris = srgb(92, 62, 38) * fibres[:, None]
    iris = iris * (1 - 0.5 * smoothstep(0.30 * CM, 0.22 * CM, ri))[:, None]  # darker near pupil
    ring = np.exp(-(((ri / CM - 0.33) / 0.08) ** 2))  # a lighter, amber ring round the pupil
    iris += (srgb(140, 110, 60) - srgb(92, 62, 38)) * 0.6 * ring[:, None]
    limbus = smoothstep(0.46 * CM, 0.6 * CM, ri)
    iris = iris * (1 - 0.75 * limbus[:, None])
    # the inner sphere behind the iris: black behind the pupil, iris-dark elsewhere (so the
    # seams of the iris disc do not show as black cracks)
    back = hi_ < 1.0 * CM
    iris[back] = np.where((ri[back] < 0.4 * CM)[:, None], srgb(8, 6, 6), srgb(50, 34, 22))
    col[n_s:] = iris
    ball = Part(f"Eye_{side.upper()}", "eye", pos, tri, rgba(col), *rigid(len(pos), joint))
    # cornea: its own copy of the clear faces
    c_idx = np.unique(s_tri[is_cornea])
    remap = np.full(len(model.neutral), -1)
    remap[c_idx] = np.arange(len(c_idx))
    c_pos = model.neutral[c_idx]
    cornea = Part(
        f"Cornea_{side.upper()}",
        "cornea",
        c_pos,
        remap[s_tri[is_cornea]],
        rgba(tint(len(c_idx), srgb(255, 255, 255)), 0.12),
        *rigid(len(c_idx), joint),
    )
    return ball, cornea


def eye_centre(model: Model, side: str) -> F64:
    """The eyeball's centre, rounded to a nanometre: the least-squares fit's last digits
    differ between CPUs (BLAS kernels), and the centre is written into the GLB's JSON as
    text, so unrounded it made the committed file unreproducible on another machine."""
    lo, hi = PARTS[f"sclera_{side}"]
    centre: F64 = np.round(sphere_fit(model.neutral[lo:hi])[0], 9)
    return centre


# ------------------------------------------------------------------ assembling the head


def landmarks(model: Model) -> dict[str, F64]:
    """A few named points of the neutral face (Multi-PIE 68 indices, README.upstream.md)."""
    n = model.neutral
    return {
        "mouth": (n[5695] + n[5957]) / 2,  # inner lip midpoints
        "mouth_l": n[4275],
        "mouth_r": n[5708],
        "lip_top": n[2081],
        "lip_bottom": n[5518],
        "eye_l": eye_centre(model, "l"),
        "eye_r": eye_centre(model, "r"),
    }


def build_parts(model: Model) -> list[Part]:
    deltas = arkit_deltas(model)
    lm = landmarks(model)
    n = model.neutral
    skin_ranges = ["face", "head", "mouth_socket", "eye_socket_l", "eye_socket_r"]
    idx = np.concatenate([np.arange(*PARTS[r]) for r in skin_ranges])
    col = skin_colours(n[idx], lm)
    # the inside of the mouth and the eye sockets: dark red, darker further in
    ms = slice(PARTS["mouth_socket"][0], PARTS["mouth_socket"][1])
    k0 = PARTS["mouth_socket"][0]
    depth = smoothstep(4.0, 10.5, n[ms, 2] / CM)
    col[k0 : k0 + (ms.stop - ms.start)] = (
        srgb(40, 14, 14) * (1 - depth[:, None]) + srgb(120, 50, 52) * depth[:, None]
    )
    es = PARTS["eye_socket_l"][0]
    col[es : PARTS["eye_socket_r"][1]] = srgb(150, 80, 78)
    full = subset(model, deltas, "Face", "skin", skin_ranges, rgba(col))
    cap = cap_part(full)
    sweater = sweater_part(full)
    face = subset(model, deltas, "Face", "skin", skin_ranges, rgba(col), hide=hidden_skin(n[idx]))

    gt = np.arange(*PARTS["gums_tongue"])
    tongue = np.isin(gt, tongue_vertices(model))
    g_col = np.where(tongue[:, None], srgb(128, 52, 58), srgb(176, 88, 94))
    g_col = g_col * mouth_shade(n[gt])[:, None]
    gums = subset(model, deltas, "GumsTongue", "mouth", ["gums_tongue"], rgba(g_col))
    t_pos = n[slice(*PARTS["teeth"])]
    # teeth: ivory, a shade darker toward the back of the mouth
    t_shade = mouth_shade(t_pos)
    teeth = subset(
        model,
        deltas,
        "Teeth",
        "teeth",
        ["teeth"],
        rgba(srgb(236, 228, 212) * t_shade[:, None]),
        hide=back_molars(),
    )
    eye_l, cornea_l = eye_parts(model, "l")
    eye_r, cornea_r = eye_parts(model, "r")
    lac_n = sum(PARTS[f"lacrimal_{s}"][1] - PARTS[f"lacrimal_{s}"][0] for s in "lr")
    lacrimal = subset(
        model,
        deltas,
        "Lacrimal",
        "wet",
        ["lacrimal_l", "lacrimal_r"],
        rgba(tint(lac_n, srgb(230, 190, 185)), 0.35),
    )
    occ_ranges = ["occlusion_l", "occlusion_r"]
    occ_idx = np.concatenate([np.arange(*PARTS[r]) for r in occ_ranges])
    occ_alpha = occlusion_alpha(model, occ_idx, lm)
    occlusion = subset(
        model,
        deltas,
        "EyeOcclusion",
        "shadow",
        occ_ranges,
        rgba(tint(len(occ_idx), srgb(40, 22, 20)), occ_alpha),
    )
    lash_ranges = ["lashes_l", "lashes_r"]
    lash_idx = np.concatenate([np.arange(*PARTS[r]) for r in lash_ranges])
    lash_alpha = lash_fade(model, lash_idx)
    lashes = subset(
        model,
        deltas,
        "Eyelashes",
        "lashes",
        lash_ranges,
        rgba(tint(len(lash_idx), srgb(30, 22, 18)), lash_alpha),
    )
    parts = [face, gums, teeth, eye_l, eye_r, lacrimal, occlusion, lashes, cap, sweater]
    parts += [cornea_l, cornea_r]
    return parts


# The second and third molars (README.upstream.md, "Teeth Details"): deep in the cheeks, never
# in view from in front of the face, so not drawn.
BACK_MOLARS = (
    (17039, 17416), (18870, 19247), (19247, 19602), (21096, 21451),
)  # fmt: skip


def back_molars() -> npt.NDArray[np.bool_]:
    lo = PARTS["teeth"][0]
    out = np.zeros(PARTS["teeth"][1] - lo, bool)
    for a, b in BACK_MOLARS:
        out[a - lo : b - lo] = True
    return out


def mouth_shade(p: F64) -> F64:
    """Less light reaches the back of the mouth: a baked occlusion by depth (z)."""
    out: F64 = 0.2 + 0.8 * smoothstep(5.0, 11.2, p[:, 2] / CM) ** 2
    return out


def occlusion_alpha(model: Model, idx: I64, lm: dict[str, F64]) -> F64:
    """A shadow where the mesh lies on the eyeball, none where it lies over the lids' skin."""
    p = model.neutral[idx]
    out = np.zeros(len(idx))
    for side in "lr":
        lo, hi = PARTS[f"occlusion_{side}"]
        m = (idx >= lo) & (idx < hi)
        q = p[m]
        centre = eye_centre(model, side)
        radius = sphere_fit(model.neutral[slice(*PARTS[f"sclera_{side}"])])[1]
        # on the eyeball (in the corner under the lid): a shadow; over the lid's skin: nothing
        d = np.linalg.norm(q - centre, axis=1) - radius
        out[m] = 0.4 * (1 - smoothstep(0.0, 0.06 * CM, d))
    return out


def lash_fade(model: Model, idx: I64) -> F64:
    """Lashes are strips (meant for an alpha texture): opaque at the lid margin (where the
    lacrimal line runs), fading toward the tips; the lower lashes fainter and shorter."""
    p = model.neutral[idx]
    margin = model.neutral[PARTS["lacrimal_l"][0] : PARTS["lacrimal_r"][1]]
    d = np.array([np.min(np.linalg.norm(margin - q, axis=1)) for q in p])
    side_centre = np.where(p[:, 0] > 0, eye_centre(model, "l")[1], eye_centre(model, "r")[1])
    lower = p[:, 1] < side_centre
    out: F64 = np.where(
        lower,
        0.3 * (1 - smoothstep(0.02 * CM, 0.18 * CM, d)),
        0.9 * (1 - smoothstep(0.03 * CM, 0.4 * CM, d)) + 0.05,
    )
    return out


# ------------------------------------------------------------------ glTF writing

MATERIALS = {
    # name: (roughness, alphaMode, doubleSided)
    "skin": (0.58, "OPAQUE", False),
    "mouth": (0.45, "OPAQUE", False),
    "teeth": (0.32, "OPAQUE", False),
    "eye": (0.3, "OPAQUE", True),
    "cornea": (0.04, "BLEND", False),
    "wet": (0.08, "BLEND", False),
    "shadow": (1.0, "BLEND", False),
    "lashes": (0.7, "BLEND", True),
    "cap": (0.95, "OPAQUE", False),
    "cloth": (0.92, "OPAQUE", False),
}


class GlbWriter:
    def __init__(self) -> None:
        self.bin = bytearray()
        self.views: list[dict[str, object]] = []
        self.accessors: list[dict[str, object]] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        while len(self.bin) % 4:
            self.bin.append(0)
        v: dict[str, object] = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(data)}
        if target is not None:
            v["target"] = target
        self.bin.extend(data)
        self.views.append(v)
        return len(self.views) - 1

    def accessor(self, acc: dict[str, object]) -> int:
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def floats(self, a: F64, kind: str, minmax: bool = False) -> int:
        arr = np.ascontiguousarray(a, np.float32)
        acc: dict[str, object] = {
            "bufferView": self.view(arr.tobytes(), 34962),
            "componentType": 5126,
            "count": len(arr),
            "type": kind,
        }
        if minmax:
            acc["min"] = [float(x) for x in arr.min(axis=0)]
            acc["max"] = [float(x) for x in arr.max(axis=0)]
        return self.accessor(acc)

    def ubytes(self, a: npt.NDArray[np.uint8], kind: str, normalized: bool) -> int:
        arr = np.ascontiguousarray(a, np.uint8)
        acc: dict[str, object] = {
            "bufferView": self.view(arr.tobytes(), 34962),
            "componentType": 5121,
            "count": len(arr),
            "type": kind,
        }
        if normalized:
            acc["normalized"] = True
        return self.accessor(acc)

    def indices(self, tri: I64) -> int:
        flat = tri.reshape(-1)
        big = flat.max() >= 65535
        arr = flat.astype(np.uint32 if big else np.uint16)
        return self.accessor(
            {
                "bufferView": self.view(arr.tobytes(), 34963),
                "componentType": 5125 if big else 5123,
                "count": len(arr),
                "type": "SCALAR",
            }
        )

    def sparse_target(self, delta: F64) -> int:
        q = np.round(np.clip(delta, -1, 1) * Q).astype(np.int16)
        moved = np.nonzero(np.abs(q).max(axis=1) > 0)[0]
        vals = q[moved]
        acc: dict[str, object] = {
            "componentType": 5122,
            "normalized": True,
            "count": len(delta),
            "type": "VEC3",
            "min": [int(x) for x in np.minimum(q.min(axis=0), 0)],
            "max": [int(x) for x in np.maximum(q.max(axis=0), 0)],
        }
        if len(moved):
            acc["sparse"] = {
                "count": len(moved),
                "indices": {
                    "bufferView": self.view(moved.astype(np.uint16).tobytes()),
                    "componentType": 5123,
                },
                "values": {"bufferView": self.view(vals.tobytes())},
            }
        return self.accessor(acc)


def to_glb(parts: list[Part], model: Model) -> bytes:
    lm = landmarks(model)
    w = GlbWriter()
    materials, mat_index = [], {}
    for name, (rough, mode, double) in MATERIALS.items():
        mat: dict[str, object] = {
            "name": name,
            "pbrMetallicRoughness": {
                "baseColorFactor": [1, 1, 1, 1],
                "metallicFactor": 0.0,
                "roughnessFactor": rough,
            },
        }
        if mode != "OPAQUE":
            mat["alphaMode"] = mode
        if double:
            mat["doubleSided"] = True
        mat_index[name] = len(materials)
        materials.append(mat)
    # joints: Neck (root) > Head > LeftEye, RightEye
    world = {
        "Neck": NECK_ROOT,
        "Head": HEAD_PIVOT,
        "LeftEye": lm["eye_l"],
        "RightEye": lm["eye_r"],
    }
    nodes: list[dict[str, object]] = [
        {"name": "Neck", "translation": list(map(float, NECK_ROOT)), "children": [1]},
        {
            "name": "Head",
            "translation": list(map(float, HEAD_PIVOT - NECK_ROOT)),
            "children": [2, 3],
        },
        {"name": "LeftEye", "translation": list(map(float, lm["eye_l"] - HEAD_PIVOT))},
        {"name": "RightEye", "translation": list(map(float, lm["eye_r"] - HEAD_PIVOT))},
    ]
    ibm = np.zeros((4, 16), np.float32)
    for k, name in enumerate(JOINTS):
        m = np.eye(4)
        m[:3, 3] = -world[name]
        ibm[k] = m.T.reshape(-1)  # column-major
    ibm_acc = w.accessor(
        {
            "bufferView": w.view(ibm.tobytes()),
            "componentType": 5126,
            "count": 4,
            "type": "MAT4",
        }
    )
    skin = {"joints": [0, 1, 2, 3], "inverseBindMatrices": ibm_acc, "skeleton": 0}
    meshes = []
    mesh_nodes = []
    for part in parts:
        normal = part.normal if part.normal is not None else vertex_normals(part.pos, part.tri)
        wq = np.round(part.weights * 255).astype(np.int64)
        wq[:, 0] += 255 - wq.sum(axis=1)  # weights sum to exactly 1
        attrs = {
            "POSITION": w.floats(part.pos, "VEC3", minmax=True),
            "NORMAL": w.floats(normal, "VEC3"),
            "COLOR_0": w.ubytes(
                np.round(np.clip(part.color, 0, 1) * 255).astype(np.uint8), "VEC4", True
            ),
            "JOINTS_0": w.ubytes(part.joints, "VEC4", False),
            "WEIGHTS_0": w.ubytes(wq.astype(np.uint8), "VEC4", True),
        }
        prim: dict[str, object] = {
            "attributes": attrs,
            "indices": w.indices(part.tri),
            "material": mat_index[part.material],
        }
        names = [n for n in ARKIT52 if n in part.targets]
        mesh: dict[str, object] = {"name": part.name, "primitives": [prim]}
        if names:
            prim["targets"] = [{"POSITION": w.sparse_target(part.targets[n])} for n in names]
            mesh["extras"] = {"targetNames": names}
            mesh["weights"] = [0.0] * len(names)
        meshes.append(mesh)
        nodes.append({"name": part.name, "mesh": len(meshes) - 1, "skin": 0})
        mesh_nodes.append(len(nodes) - 1)
    root = len(nodes)
    nodes.append({"name": "ICT_Head", "children": [0, *mesh_nodes]})

    def pts(*ps: F64) -> list[list[float]]:
        return [[round(float(c - h), 5) for c, h in zip(p, HEAD_PIVOT, strict=True)] for p in ps]

    mouth_pts = pts(
        lm["mouth_l"] + np.array([0.25, 0.2, 0]) * CM,
        lm["mouth_r"] + np.array([-0.25, -0.2, 0]) * CM,
        lm["lip_top"],
        lm["lip_bottom"],
    )
    eye_pts = {
        s: pts(
            lm[f"eye_{s}"] + np.array([-1.1, -0.45, 1.4]) * CM,
            lm[f"eye_{s}"] + np.array([1.1, 0.55, 1.4]) * CM,
        )
        for s in "lr"
    }
    extras = {
        "source": "ICT Face Model Light (USC ICT Vision and Graphics Lab), MIT licence; "
        "built by tools/make_ict_head.py",
        "frame": {"target": [0.0, -0.015, 0.03], "radius": 0.17},
        "regions": {"node": "Head", "mouth": mouth_pts, "eyeL": eye_pts["l"], "eyeR": eye_pts["r"]},
    }
    gltf = {
        "asset": {
            "version": "2.0",
            "generator": "avatar-engine tools/make_ict_head.py",
            "copyright": "ICT Face Model Light: (c) 2020 USC Institute for Creative "
            "Technologies, MIT licence (ICT-FaceKit-LICENSE.txt)",
        },
        "extensionsUsed": ["KHR_mesh_quantization"],
        "extensionsRequired": ["KHR_mesh_quantization"],
        "scene": 0,
        "scenes": [{"name": "ICT_Head", "nodes": [root], "extras": extras}],
        "nodes": nodes,
        "meshes": meshes,
        "materials": materials,
        "skins": [skin],
        "accessors": w.accessors,
        "bufferViews": w.views,
        "buffers": [{"byteLength": len(w.bin)}],
    }
    return glb_bytes(gltf, bytes(w.bin))


def glb_bytes(gltf: dict[str, object], binary: bytes) -> bytes:
    js = json.dumps(gltf, separators=(",", ":"), sort_keys=False).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return (
        struct.pack("<III", 0x46546C67, 2, total)
        + struct.pack("<II", len(js), 0x4E4F534A)
        + js
        + struct.pack("<II", len(binary), 0x004E4942)
        + binary
    )


def read_glb(data: bytes) -> tuple[dict[str, object], bytes]:
    """Split a GLB into its JSON and binary chunks."""
    magic, _, _ = struct.unpack_from("<III", data, 0)
    if magic != 0x46546C67:
        raise ValueError("not a GLB file")
    jlen, _ = struct.unpack_from("<II", data, 12)
    gltf = json.loads(data[20 : 20 + jlen])
    blen, _ = struct.unpack_from("<II", data, 20 + jlen)
    return gltf, data[28 + jlen : 28 + jlen + blen]


def read_targets(data: bytes) -> dict[str, dict[str, F64]]:
    """Morph target deltas per mesh and name (metres, dense), read back from a GLB."""
    gltf, binary = read_glb(data)
    views, accessors = gltf["bufferViews"], gltf["accessors"]
    assert isinstance(views, list) and isinstance(accessors, list)
    assert isinstance(gltf["meshes"], list)

    def view(i: int, dtype: type, width: int) -> npt.NDArray[np.generic]:
        v = views[i]
        raw = binary[v["byteOffset"] : v["byteOffset"] + v["byteLength"]]
        flat = np.frombuffer(raw, dtype)
        return flat.reshape(-1, width) if width > 1 else flat

    out: dict[str, dict[str, F64]] = {}
    for mesh in gltf["meshes"]:
        names = (mesh.get("extras") or {}).get("targetNames", [])
        prim = mesh["primitives"][0]
        per: dict[str, F64] = {}
        for name, target in zip(names, prim.get("targets", []), strict=True):
            acc = accessors[target["POSITION"]]
            dense = np.zeros((acc["count"], 3))
            sp = acc.get("sparse")
            if sp:
                idx = view(sp["indices"]["bufferView"], np.uint16, 1).astype(np.int64)
                vals = view(sp["values"]["bufferView"], np.int16, 3).astype(np.float64)
                dense[idx] = vals / Q
            per[name] = dense
        out[mesh["name"]] = per
    return out


def build(folder: Path) -> bytes:
    model = read_model(folder)
    return to_glb(build_parts(model), model)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ict_dir", type=Path, help="the unpacked ICT Face Model Light folder")
    ap.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with the file on disk")
    args = ap.parse_args(argv)
    if not (args.ict_dir / "generic_neutral_mesh.obj").is_file():
        print(f"make_ict_head: no generic_neutral_mesh.obj in {args.ict_dir}", file=sys.stderr)
        return 2
    data = build(args.ict_dir)
    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == data
        print(f"{args.out}: {'up to date' if same else 'DIFFERS from a fresh build'}")
        return 0 if same else 1
    args.out.write_bytes(data)
    kib = len(data) / 1024
    print(f"wrote {args.out} ({kib:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
