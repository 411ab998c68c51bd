// Binds a stream's morph names (the hello's, in rig order) to a mesh's blendshape indices, once
// per hello, so the per-frame path is an index gather and never a string lookup.
//
// A stream morph finds its blendshape by, in order:
//   1. the name map (stream name -> blendshape name; MorphNameMap assets in Unity);
//   2. the exact name;
//   3. the same name ignoring case and ARKit's three spellings (eyeBlinkLeft, EyeBlinkLeft,
//      eyeBlink_L are one shape, as in src/avatar_engine/rigs/arkit.py);
//   4. the same, after dropping a "Mesh." prefix that some exporters add (Maya, Blender FBX:
//      "Body.eyeBlinkLeft", "blendShape1.jawOpen").
// Unmatched morphs get -1 (they are listed by Unmatched for the console).
using System;
using System.Collections.Generic;

namespace AvatarEngine.Client
{
    public static class ArkitNames
    {
        /// <summary>The 52 ARKit blendshapes in Apple / Live Link order.</summary>
        public static readonly string[] Shapes =
        {
            "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft", "eyeWideLeft",
            "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight",
            "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
            "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight",
            "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
            "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
            "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
            "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
        };

        /// <summary>Live Link Face's nine rotation channels (the engine's channel names).</summary>
        public static readonly string[] Rotations =
        {
            "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
        };

        static readonly Dictionary<string, string> Lookup = Build();

        static Dictionary<string, string> Build()
        {
            var table = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (string name in Shapes)
            {
                table[name.ToLowerInvariant()] = name;
                foreach (var side in new[] { new[] { "Left", "_L" }, new[] { "Right", "_R" } })
                {
                    // jawLeft / mouthRight are directions, not sides: never spelled _L/_R.
                    bool direction = name.StartsWith("jaw", StringComparison.Ordinal) || name == "mouthLeft" || name == "mouthRight";
                    if (name.EndsWith(side[0], StringComparison.Ordinal) && !direction)
                    {
                        table[(name.Substring(0, name.Length - side[0].Length) + side[1]).ToLowerInvariant()] = name;
                    }
                }
            }
            return table;
        }

        /// <summary>The camelCase ARKit name of any of its three spellings (any case), or null.</summary>
        public static string Canonical(string name)
        {
            string c;
            return Lookup.TryGetValue(name.Trim().ToLowerInvariant(), out c) ? c : null;
        }
    }

    public static class MorphBinder
    {
        /// <summary>The comparison key of a name: its ARKit canonical form, else lower case.</summary>
        public static string Key(string name)
        {
            return ArkitNames.Canonical(name) ?? name.Trim().ToLowerInvariant();
        }

        static string AfterDot(string name)
        {
            int dot = name.LastIndexOf('.');
            return dot >= 0 && dot + 1 < name.Length ? name.Substring(dot + 1) : name;
        }

        /// <summary>For each stream morph, the index of its blendshape in shapes (or -1).</summary>
        public static int[] Bind(IList<string> streamNames, IList<string> shapes, IDictionary<string, string> nameMap = null)
        {
            var exact = new Dictionary<string, int>(StringComparer.Ordinal);
            var loose = new Dictionary<string, int>(StringComparer.Ordinal);
            var stripped = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = shapes.Count - 1; i >= 0; i--)  // the first of duplicates wins
            {
                exact[shapes[i]] = i;
                loose[Key(shapes[i])] = i;
                stripped[Key(AfterDot(shapes[i]))] = i;
            }
            var result = new int[streamNames.Count];
            for (int m = 0; m < result.Length; m++)
            {
                string name = streamNames[m];
                string mapped;
                int at;
                if (nameMap != null && nameMap.TryGetValue(name, out mapped))
                {
                    result[m] = exact.TryGetValue(mapped, out at) || loose.TryGetValue(Key(mapped), out at) ? at : -1;
                    continue;
                }
                if (exact.TryGetValue(name, out at) || loose.TryGetValue(Key(name), out at) || stripped.TryGetValue(Key(name), out at))
                {
                    result[m] = at;
                }
                else
                {
                    result[m] = -1;
                }
            }
            return result;
        }

        /// <summary>Stream morph names that found no blendshape.</summary>
        public static List<string> Unmatched(IList<string> streamNames, int[] bound)
        {
            var missing = new List<string>();
            for (int m = 0; m < bound.Length; m++)
            {
                if (bound[m] < 0) missing.Add(streamNames[m]);
            }
            return missing;
        }
    }
}
