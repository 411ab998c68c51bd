// A thin stand-in for the UnityEngine types the Unity package (clients/unity/Runtime/Unity)
// uses, with Unity's signatures, so tests/test_unity_client.py compiles the MonoBehaviours
// with Mono's mcs (a typo or a wrong API call fails the test). The few behaviours FaceRunner.cs
// observes are recorded (blendshape weights, bone rotations); nothing else does anything.
// Not part of the package: Unity provides the real assembly.
using System;
using System.Collections.Generic;

namespace UnityEngine
{
    [AttributeUsage(AttributeTargets.Class)]
    public sealed class CreateAssetMenuAttribute : Attribute
    {
        public string menuName { get; set; }
        public string fileName { get; set; }
        public int order { get; set; }
    }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class TooltipAttribute : Attribute
    {
        public readonly string tooltip;
        public TooltipAttribute(string tooltip) { this.tooltip = tooltip; }
    }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class RangeAttribute : Attribute
    {
        public readonly float min, max;
        public RangeAttribute(float min, float max) { this.min = min; this.max = max; }
    }

    [AttributeUsage(AttributeTargets.Field, AllowMultiple = true)]
    public sealed class HeaderAttribute : Attribute
    {
        public readonly string header;
        public HeaderAttribute(string header) { this.header = header; }
    }

    [AttributeUsage(AttributeTargets.Class)]
    public sealed class AddComponentMenu : Attribute
    {
        public AddComponentMenu(string menuName) { }
    }

    [AttributeUsage(AttributeTargets.Class)]
    public sealed class DisallowMultipleComponent : Attribute { }

    [AttributeUsage(AttributeTargets.Class, AllowMultiple = true)]
    public sealed class RequireComponent : Attribute
    {
        public RequireComponent(Type requiredComponent) { }
    }

    public class Object
    {
        public string name { get; set; }
    }

    public class ScriptableObject : Object { }

    public class GameObject : Object
    {
        internal readonly List<Component> components = new List<Component>();

        public T AddComponent<T>() where T : Component, new()
        {
            var c = new T { gameObject = this };
            components.Add(c);
            return c;
        }
    }

    public class Component : Object
    {
        Transform own;
        public GameObject gameObject { get; internal set; }

        public Transform transform
        {
            get { return this as Transform ?? (own ?? (own = new Transform())); }
        }

        public T GetComponent<T>() where T : class
        {
            if (gameObject == null) return null;
            foreach (Component c in gameObject.components)
            {
                if (c is T) return c as T;
            }
            return null;
        }
    }

    public class Behaviour : Component
    {
        public bool enabled { get; set; }
    }

    public class MonoBehaviour : Behaviour { }

    public class Transform : Component
    {
        public Vector3 position { get; set; }
        public Quaternion localRotation { get; set; } = Quaternion.identity;
    }

    public struct Vector3
    {
        public float x, y, z;

        public Vector3(float x, float y, float z) { this.x = x; this.y = y; this.z = z; }

        public static float Distance(Vector3 a, Vector3 b)
        {
            float dx = a.x - b.x, dy = a.y - b.y, dz = a.z - b.z;
            return (float)Math.Sqrt(dx * dx + dy * dy + dz * dz);
        }
    }

    public struct Quaternion
    {
        public float x, y, z, w;

        public Quaternion(float x, float y, float z, float w) { this.x = x; this.y = y; this.z = z; this.w = w; }

        public static Quaternion identity { get { return new Quaternion(0, 0, 0, 1); } }

        static Quaternion Axis(float deg, int axis)
        {
            double h = deg * Math.PI / 360.0;
            float s = (float)Math.Sin(h), c = (float)Math.Cos(h);
            return axis == 0 ? new Quaternion(s, 0, 0, c) : axis == 1 ? new Quaternion(0, s, 0, c) : new Quaternion(0, 0, s, c);
        }

        /// <summary>Unity's order: Z first, then X, then Y (R = Ry * Rx * Rz).</summary>
        public static Quaternion Euler(float x, float y, float z)
        {
            return Axis(y, 1) * Axis(x, 0) * Axis(z, 2);
        }

        public static Quaternion operator *(Quaternion a, Quaternion b)
        {
            return new Quaternion(
                a.w * b.x + a.x * b.w + a.y * b.z - a.z * b.y,
                a.w * b.y - a.x * b.z + a.y * b.w + a.z * b.x,
                a.w * b.z + a.x * b.y - a.y * b.x + a.z * b.w,
                a.w * b.w - a.x * b.x - a.y * b.y - a.z * b.z);
        }
    }

    public class Mesh : Object
    {
        public readonly List<string> shapes = new List<string>();

        public int blendShapeCount { get { return shapes.Count; } }

        public string GetBlendShapeName(int shapeIndex) { return shapes[shapeIndex]; }
    }

    public class Renderer : Component { }

    public class SkinnedMeshRenderer : Renderer
    {
        public readonly Dictionary<int, float> weights = new Dictionary<int, float>();

        public Mesh sharedMesh { get; set; }

        public void SetBlendShapeWeight(int index, float value) { weights[index] = value; }
    }

    public class Camera : Behaviour
    {
        public static Camera main { get; set; }
    }

    public class AudioClip : Object { }

    public class AudioSource : Behaviour
    {
        public AudioClip clip { get; set; }
        public bool loop { get; set; }
        public bool isPlaying { get; private set; }

        public void Play() { isPlaying = true; }
    }

    public static class AudioSettings
    {
        public static int outputSampleRate { get { return 48000; } }

        public static void GetDSPBufferSize(out int bufferLength, out int numBuffers)
        {
            bufferLength = 1024;
            numBuffers = 4;
        }
    }

    public static class Mathf
    {
        public static int Max(int a, int b) { return Math.Max(a, b); }
    }

    public static class Debug
    {
        public static readonly List<string> logged = new List<string>();

        public static void Log(object message) { logged.Add(message.ToString()); Console.Error.WriteLine(message); }

        public static void LogWarning(object message) { logged.Add(message.ToString()); Console.Error.WriteLine(message); }
    }
}
