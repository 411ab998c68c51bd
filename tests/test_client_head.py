"""The bundled heads and their generators: head.glb (tools/make_head.py, CC4 names) and
ict-head.glb (tools/make_ict_head.py, from the ICT Face Model, ARKit names)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("pygltflib")

ROOT = Path(__file__).resolve().parent.parent
GLB = ROOT / "src" / "avatar_engine" / "web" / "head.glb"


def _make_head() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_head", ROOT / "tools" / "make_head.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_head"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make_head() -> ModuleType:
    return _make_head()


def test_every_required_cc4_morph_is_on_the_head(make_head: ModuleType) -> None:
    targets = make_head.read_targets(GLB.read_bytes())
    have = {name for per_mesh in targets.values() for name in per_mesh}
    required = set(make_head.required_morphs())
    assert len(required) >= 80
    assert required <= have, sorted(required - have)
    rig = json.loads((ROOT / "src/avatar_engine/rigs/data/cc4-extended.json").read_text())
    rig_morphs = {m for names in rig["regions"].values() for m in names}
    assert have <= rig_morphs, sorted(have - rig_morphs)


def test_every_target_moves_something_and_names_match_targets(make_head: ModuleType) -> None:
    import pygltflib  # type: ignore[import-untyped]

    gltf = pygltflib.GLTF2.load_from_bytes(GLB.read_bytes())
    for mesh in gltf.meshes:
        names = (mesh.extras or {}).get("targetNames", [])
        for prim in mesh.primitives:
            # three.js's GLTFLoader ignores targetNames whose length differs from the targets
            assert len(prim.targets or []) == len(names), mesh.name
    for mesh, per_name in make_head.read_targets(GLB.read_bytes()).items():
        for name, delta in per_name.items():
            assert float(np.abs(delta).max()) > 5e-4, f"{mesh}/{name} barely moves"


def test_bones_are_named_as_the_rig_expects() -> None:
    import pygltflib

    gltf = pygltflib.GLTF2.load_from_bytes(GLB.read_bytes())
    nodes = {n.name for n in gltf.nodes}
    rig = json.loads((ROOT / "src/avatar_engine/rigs/data/cc4-extended.json").read_text())
    bones = {c["bone"] for c in rig["channels"]} | {d["bone"] for d in rig["bone_drivers"]}
    assert bones <= nodes, sorted(bones - nodes)
    assert len(gltf.skins) == 1


def test_the_script_regenerates_the_committed_file(make_head: ModuleType) -> None:
    data, per_mesh = make_head.build()
    fresh = make_head.read_targets(data)
    committed = make_head.read_targets(GLB.read_bytes())
    assert fresh.keys() == committed.keys()
    for mesh, targets in fresh.items():
        assert targets.keys() == committed[mesh].keys(), mesh
        for name, delta in targets.items():
            np.testing.assert_allclose(committed[mesh][name], delta, atol=1e-5, err_msg=name)
    assert per_mesh["Face"], "the face carries morph targets"


# ------------------------------------------------------------------ the ICT head (the default)

ICT_GLB = ROOT / "src" / "avatar_engine" / "web" / "ict-head.glb"


def _make_ict_head() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_ict_head", ROOT / "tools" / "make_ict_head.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_ict_head"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make_ict_head() -> ModuleType:
    return _make_ict_head()


def test_ict_head_has_all_52_arkit_morphs_sparse_and_small(make_ict_head: ModuleType) -> None:
    from avatar_engine.rigs.arkit import ARKIT_NAMES

    data = ICT_GLB.read_bytes()
    assert len(data) < 6 * 1024 * 1024
    targets = make_ict_head.read_targets(data)
    have = {name for per_mesh in targets.values() for name in per_mesh}
    assert have == set(ARKIT_NAMES)
    for mesh, per_name in targets.items():
        for name, delta in per_name.items():
            assert float(np.abs(delta).max()) > 2e-5, f"{mesh}/{name} barely moves"
    # the tongue comes out only on tongueOut, which only the mouth's inside has
    assert "tongueOut" in targets["GumsTongue"] and "tongueOut" not in targets["Face"]
    gltf, _ = make_ict_head.read_glb(data)
    for acc_index in (t["POSITION"] for m in gltf["meshes"] for p in m["primitives"]
                      for t in p.get("targets", [])):  # fmt: skip
        acc = gltf["accessors"][acc_index]
        assert "bufferView" not in acc and acc["componentType"] == 5122 and acc["normalized"]
    assert "KHR_mesh_quantization" in gltf["extensionsRequired"]


def test_ict_head_nodes_match_the_rig(make_ict_head: ModuleType) -> None:
    gltf, _ = make_ict_head.read_glb(ICT_GLB.read_bytes())
    nodes = {n["name"] for n in gltf["nodes"]}
    rig = json.loads((ROOT / "src/avatar_engine/rigs/data/arkit52.json").read_text())
    assert {c["bone"] for c in rig["channels"]} <= nodes
    extras = gltf["scenes"][0]["extras"]
    assert extras["regions"]["node"] in nodes and "frame" in extras
    licence = (ROOT / "src/avatar_engine/web/ICT-FaceKit-LICENSE.txt").read_text()
    assert "MIT License" in licence and "USC Institute for Creative Technologies" in licence


def test_the_ict_script_regenerates_the_committed_file(
    make_ict_head: ModuleType, tmp_path: Path
) -> None:
    """The committed GLB is what the tool builds from the model the repository carries
    (tools/data; ``AVATAR_ENGINE_ICT_DIR`` may name an unpacked copy instead)."""
    model = os.environ.get("AVATAR_ENGINE_ICT_DIR")
    if model is None:
        with tarfile.open(ROOT / "tools/data/ict-facekit-light.tar.xz") as archive:
            archive.extractall(tmp_path, filter="data")
        model = str(tmp_path / "ict")
    fresh = make_ict_head.build(Path(model))
    assert fresh == ICT_GLB.read_bytes()
