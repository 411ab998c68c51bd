// A name map asset for rigs whose blendshape names differ from the stream's morph names
// (Assets > Create > Avatar Engine > Morph Name Map). Only the names that differ need an
// entry: everything else binds by name, ignoring case and ARKit's three spellings.
using System;
using System.Collections.Generic;
using UnityEngine;

namespace AvatarEngine.Unity
{
    [CreateAssetMenu(fileName = "MorphNameMap", menuName = "Avatar Engine/Morph Name Map", order = 1)]
    public sealed class MorphNameMap : ScriptableObject
    {
        [Serializable]
        public struct Entry
        {
            [Tooltip("The morph name in the stream (the hello's, e.g. Jaw_Open or jawOpen)")]
            public string stream;

            [Tooltip("The blendshape name on your mesh")]
            public string blendShape;
        }

        public List<Entry> entries = new List<Entry>();

        /// <summary>The entries as a dictionary (later duplicates win).</summary>
        public Dictionary<string, string> ToDictionary()
        {
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (Entry e in entries)
            {
                if (!string.IsNullOrEmpty(e.stream) && !string.IsNullOrEmpty(e.blendShape)) map[e.stream] = e.blendShape;
            }
            return map;
        }
    }
}
