// Binding a decoded stream to a Three.js object: names are resolved to indices once, at bind
// time; `apply` then only copies floats and sets a few quaternions.
//
// Morphs. Every mesh under the root that has a `morphTargetDictionary` is matched by name
// (exact first, then case/punctuation-insensitive, so `blendShape1.eyeBlinkLeft` still finds
// `eyeBlinkLeft`). Per mesh the binding keeps two index arrays:
//   src[k] -> index into the stream's values (rig order)
//   dst[k] -> index into mesh.morphTargetInfluences
// A rig that splits the face across meshes (CC4: body, eyelashes, tongue, teeth...) gets each
// morph written on every mesh that has it.
//
// Bones. A rig profile's `channels` ({name, bone, axis, scale_deg}) turn a stream channel value
// of 1.0 into scale_deg degrees about the bone's local axis; `bone_drivers`
// ({bone, axis, degrees_per_unit: {morph: deg}}) rotate a bone from morph values (the CC4 jaw
// from Jaw_Open / V_Open). Per bone the rotations add up per axis and are applied on top of the
// bone's rest pose: q = rest * euler(x, y, z, 'YXZ').
//
// values layout passed to apply():  [ morph 0 .. morph M-1 | channel 0 .. channel C-1 ]

import { Euler, Quaternion } from 'three';

const DEG = Math.PI / 180;
const AXES = { x: 0, y: 1, z: 2 };

/** Lower case, letters and digits only, and without a `prefix.` (Maya blend shape node). */
export function normalizeName(name) {
  const dot = name.lastIndexOf('.');
  return (dot >= 0 ? name.slice(dot + 1) : name).toLowerCase().replace(/[^a-z0-9]/g, '');
}

/**
 * Find a node by name: exact, then case-insensitive, then a name that ends with it
 * (`mixamorig:Head` for `Head`).
 * @param {import('three').Object3D} root
 * @param {string} name
 */
export function findNode(root, name) {
  const exact = root.getObjectByName(name);
  if (exact) return exact;
  const lower = name.toLowerCase();
  let loose = null;
  let suffix = null;
  root.traverse((o) => {
    const n = (o.name || '').toLowerCase();
    if (!loose && n === lower) loose = o;
    else if (!suffix && n.endsWith(lower) && /[^a-z0-9]/.test(n[n.length - lower.length - 1] ?? '')) suffix = o;
  });
  return loose ?? suffix;
}

/**
 * @typedef {object} RigBones  the part of a rig profile (GET /rigs/{name}) a binding reads
 * @property {{name: string, bone: string, axis: 'x'|'y'|'z', scale_deg?: number}[]} [channels]
 * @property {{bone: string, axis: 'x'|'y'|'z', degrees_per_unit: Record<string, number>}[]} [bone_drivers]
 */

export class RigBinding {
  /**
   * @param {import('three').Object3D} root
   * @param {{morphNames: string[], channelNames: string[], rig?: RigBones | null}} schema
   */
  constructor(root, { morphNames, channelNames, rig = null }) {
    this.root = root;
    /** The rig bone data this binding was made with. */
    this.rig = rig;
    this.morphCount = morphNames.length;
    this.width = morphNames.length + channelNames.length;
    /** @type {{mesh: import('three').Mesh, src: Int32Array, dst: Int32Array}[]} */
    this.targets = [];
    const bound = new Set();
    root.traverse((obj) => {
      const dict = /** @type {any} */ (obj).morphTargetDictionary;
      const infl = /** @type {any} */ (obj).morphTargetInfluences;
      if (!dict || !infl) return;
      const loose = new Map();
      for (const [name, j] of Object.entries(dict)) loose.set(normalizeName(name), j);
      const src = [];
      const dst = [];
      morphNames.forEach((name, i) => {
        const j = name in dict ? dict[name] : loose.get(normalizeName(name));
        if (j === undefined) return;
        src.push(i);
        dst.push(j);
        bound.add(name);
      });
      if (src.length) this.targets.push({ mesh: /** @type {any} */ (obj), src: Int32Array.from(src), dst: Int32Array.from(dst) });
    });
    /** Stream morphs that no mesh has. */
    this.unboundMorphs = morphNames.filter((n) => !bound.has(n));
    this.boundMorphs = morphNames.length - this.unboundMorphs.length;

    // Bones: one entry per distinct bone, with its terms (value index, axis, radians per unit).
    const byBone = new Map();
    /** Bone names the rig names but the model lacks. */
    this.missingBones = [];
    const term = (boneName, axis, src, radPerUnit) => {
      if (src < 0 || !(axis in AXES) || !radPerUnit) return;
      let entry = byBone.get(boneName);
      if (entry === undefined) {
        const node = findNode(root, boneName);
        if (!node) {
          if (!this.missingBones.includes(boneName)) this.missingBones.push(boneName);
          return;
        }
        entry = { node, rest: node.quaternion.clone(), src: [], axis: [], k: [] };
        byBone.set(boneName, entry);
      }
      entry.src.push(src);
      entry.axis.push(AXES[axis]);
      entry.k.push(radPerUnit);
    };
    const morphIndex = new Map(morphNames.map((n, i) => [n, i]));
    for (const ch of rig?.channels ?? []) {
      const ci = channelNames.indexOf(ch.name);
      if (ci >= 0) term(ch.bone, ch.axis, this.morphCount + ci, (ch.scale_deg ?? 40) * DEG);
    }
    for (const drv of rig?.bone_drivers ?? []) {
      for (const [morph, deg] of Object.entries(drv.degrees_per_unit)) {
        term(drv.bone, drv.axis, morphIndex.get(morph) ?? -1, deg * DEG);
      }
    }
    this.bones = [...byBone.values()].map((b) => ({
      node: b.node, rest: b.rest, src: Int32Array.from(b.src), axis: Uint8Array.from(b.axis),
      k: Float32Array.from(b.k), last: new Float32Array([NaN, NaN, NaN]),
    }));
    this._euler = new Euler(0, 0, 0, 'YXZ');
    this._q = new Quaternion();
    this._angles = new Float32Array(3);
  }

  /** Names of the bones this binding drives. */
  get boneNames() {
    return this.bones.map((b) => b.node.name);
  }

  /**
   * Write one frame of values (morphs then channels, rig order) into the meshes and bones.
   * @param {ArrayLike<number>} values
   */
  apply(values) {
    for (const { mesh, src, dst } of this.targets) {
      const infl = mesh.morphTargetInfluences;
      for (let k = 0; k < src.length; k++) infl[dst[k]] = values[src[k]];
    }
    const a = this._angles;
    for (const bone of this.bones) {
      a[0] = 0; a[1] = 0; a[2] = 0;
      for (let k = 0; k < bone.src.length; k++) a[bone.axis[k]] += values[bone.src[k]] * bone.k[k];
      const last = bone.last;
      if (a[0] === last[0] && a[1] === last[1] && a[2] === last[2]) continue; // nothing moved
      last.set(a);
      this._euler.set(a[0], a[1], a[2], 'YXZ');
      bone.node.quaternion.copy(bone.rest).multiply(this._q.setFromEuler(this._euler));
    }
  }

  /** Put every bound morph to 0 and every bone back to its rest pose. */
  reset() {
    for (const { mesh, dst } of this.targets) for (const j of dst) mesh.morphTargetInfluences[j] = 0;
    for (const bone of this.bones) {
      bone.node.quaternion.copy(bone.rest);
      bone.last.fill(NaN);
    }
  }
}
