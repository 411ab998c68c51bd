// One registration function per kernel family; module.cpp calls each of them.
#pragma once

#include <pybind11/pybind11.h>

namespace avatar_engine::bindings {

void register_retarget(pybind11::module_& m);
void register_curves(pybind11::module_& m);
void register_filters(pybind11::module_& m);
void register_compose(pybind11::module_& m);
void register_life(pybind11::module_& m);
void register_envelopes(pybind11::module_& m);
void register_audio(pybind11::module_& m);
void register_fanout(pybind11::module_& m);
void register_ingest(pybind11::module_& m);
void register_viewer(pybind11::module_& m);
void register_rtc(pybind11::module_& m);

}  // namespace avatar_engine::bindings
