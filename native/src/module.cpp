// Assembles the _core extension from one register_<family> function per kernel family.
// Users never import _core directly: avatar_engine.kernels wraps it.
#include <pybind11/pybind11.h>

#include "registers.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "avatar-engine native kernels (C++; wrapped by avatar_engine.kernels)";
    avatar_engine::bindings::register_retarget(m);
    avatar_engine::bindings::register_curves(m);
    avatar_engine::bindings::register_filters(m);
    avatar_engine::bindings::register_compose(m);
    avatar_engine::bindings::register_life(m);
    avatar_engine::bindings::register_envelopes(m);
    avatar_engine::bindings::register_audio(m);
    avatar_engine::bindings::register_fanout(m);
    avatar_engine::bindings::register_ingest(m);
    avatar_engine::bindings::register_viewer(m);
    avatar_engine::bindings::register_rtc(m);
}
