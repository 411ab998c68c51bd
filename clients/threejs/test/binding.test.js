import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferGeometry, Float32BufferAttribute, Group, Mesh, Object3D, Quaternion, Vector3 } from 'three';
import { RigBinding, findNode, normalizeName } from '../src/binding.js';

function morphMesh(name, targets) {
  const g = new BufferGeometry();
  g.setAttribute('position', new Float32BufferAttribute([0, 0, 0, 1, 0, 0, 0, 1, 0], 3));
  g.morphAttributes.position = targets.map((t) => {
    const a = new Float32BufferAttribute(new Float32Array(9), 3);
    a.name = t;
    return a;
  });
  const m = new Mesh(g); // Mesh() calls updateMorphTargets(): dictionary from the attribute names
  m.name = name;
  return m;
}

function scene() {
  const root = new Group();
  const body = morphMesh('Body', ['Jaw_Open', 'Eye_Blink_L', 'Mouth_Smile_L']);
  const lashes = morphMesh('Lashes', ['Eye_Blink_L']);
  const other = morphMesh('Other', ['blendShape1.eyeBlinkLeft']);
  const head = new Object3D(); head.name = 'CC_Base_Head';
  const jaw = new Object3D(); jaw.name = 'CC_Base_JawRoot';
  jaw.quaternion.setFromAxisAngle(new Vector3(0, 1, 0), Math.PI / 2);
  head.add(jaw);
  root.add(body, lashes, other, head);
  return { root, body, lashes, other, head, jaw };
}

const RIG = {
  channels: [
    { name: 'HeadYaw', bone: 'CC_Base_Head', axis: 'y', scale_deg: 40 },
    { name: 'HeadPitch', bone: 'CC_Base_Head', axis: 'x', scale_deg: 40 },
    { name: 'Missing', bone: 'NoSuchBone', axis: 'x', scale_deg: 40 },
  ],
  bone_drivers: [{ bone: 'CC_Base_JawRoot', axis: 'z', degrees_per_unit: { Jaw_Open: 30, V_Open: 18 } }],
};

test('morphs bind by name on every mesh that has them, once', () => {
  const s = scene();
  const b = new RigBinding(s.root, { morphNames: ['Eye_Blink_L', 'Jaw_Open', 'V_Open', 'eyeBlinkLeft'], channelNames: [], rig: null });
  assert.equal(b.targets.length, 3);
  assert.deepEqual(b.unboundMorphs, ['V_Open']);
  b.apply(new Float32Array([0.25, 0.5, 0.75, 0.9]));
  assert.deepEqual(Array.from(s.body.morphTargetInfluences), [0.5, 0.25, 0]);
  assert.deepEqual(Array.from(s.lashes.morphTargetInfluences), [0.25]);
  // 'blendShape1.eyeBlinkLeft' matched loosely; the exact name 'eyeBlinkLeft' is in the stream
  assert.ok(Math.abs(s.other.morphTargetInfluences[0] - 0.9) < 1e-6);
});

test('channels rotate bones about their local axis; drivers add up; rest pose is kept', () => {
  const s = scene();
  const rest = s.jaw.quaternion.clone();
  const b = new RigBinding(s.root, { morphNames: ['Jaw_Open', 'V_Open'], channelNames: ['HeadYaw', 'HeadPitch', 'Missing'], rig: RIG });
  assert.deepEqual(b.missingBones, ['NoSuchBone']);
  assert.deepEqual(b.boneNames.sort(), ['CC_Base_Head', 'CC_Base_JawRoot']);
  b.apply(new Float32Array([0.5, 1, 0.25, 0, 0]));
  const yaw = new Quaternion().setFromAxisAngle(new Vector3(0, 1, 0), (10 * Math.PI) / 180);
  assert.ok(s.head.quaternion.angleTo(yaw) < 1e-6);
  const open = rest.clone().multiply(new Quaternion().setFromAxisAngle(new Vector3(0, 0, 1), (33 * Math.PI) / 180));
  assert.ok(s.jaw.quaternion.angleTo(open) < 1e-6, 'jaw: 0.5*30 + 1*18 = 33 degrees about local z');
  b.reset();
  assert.ok(s.jaw.quaternion.angleTo(rest) < 1e-9);
  assert.equal(s.head.quaternion.w, 1);
});

test('names: prefix and case insensitive matching; node lookup with a namespace prefix', () => {
  assert.equal(normalizeName('blendShape1.Eye_Blink_L'), 'eyeblinkl');
  const root = new Group();
  const n = new Object3D(); n.name = 'mixamorig:Head';
  root.add(n);
  assert.equal(findNode(root, 'Head'), n);
  assert.equal(findNode(root, 'head'), n);
  assert.equal(findNode(root, 'Neck'), null);
});
