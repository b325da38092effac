# The include rules between mtc's parts: the compiler sees the runtime only
# through runtime/plan's plain data (and runtime/support), and the two
# backends share code only through runtime/kernels, never each other.
# Every build runs this (target MtLayering), so a forbidden include fails it;
# the message names the file, the include and what the directory may use.
# Usage: cmake -DMT_SOURCE_DIR=<checkout> -P cmake/CheckLayering.cmake

cmake_minimum_required(VERSION 3.25)

if(NOT MT_SOURCE_DIR)
  set(MT_SOURCE_DIR "${CMAKE_CURRENT_LIST_DIR}/..")
endif()
# A relative directory is the caller's (file(GLOB RELATIVE) needs it whole).
get_filename_component(MT_SOURCE_DIR "${MT_SOURCE_DIR}" ABSOLUTE)

# Directory = the runtime/ directories its files may include ("*": any).
set(rules
  "runtime/support=support"
  "runtime/plan=plan support"
  "runtime/kernels=kernels plan support"
  "runtime/io=io support"
  "runtime/comm=comm support"
  "runtime/text=text support"
  "runtime/chat=chat text io support"
  "runtime/cpu=cpu kernels exec comm plan support"
  "runtime/cuda=cuda kernels exec comm plan support"
  "runtime/exec=*"
  "compiler=plan support"
  "passes=plan support"
  "dialects=plan support"
  "tools/mtc=plan support"
  "tools/mtc-opt=plan support")

set(violations "")
set(checked 0)
foreach(rule ${rules})
  string(REPLACE "=" ";" rule "${rule}")
  list(GET rule 0 dir)
  list(GET rule 1 allowed)
  string(REPLACE " " ";" allowed "${allowed}")
  file(GLOB_RECURSE files RELATIVE "${MT_SOURCE_DIR}"
    "${MT_SOURCE_DIR}/${dir}/*.h" "${MT_SOURCE_DIR}/${dir}/*.cpp"
    "${MT_SOURCE_DIR}/${dir}/*.cu" "${MT_SOURCE_DIR}/${dir}/*.cuh"
    "${MT_SOURCE_DIR}/${dir}/*.td")
  foreach(file ${files})
    math(EXPR checked "${checked} + 1")
    file(STRINGS "${MT_SOURCE_DIR}/${file}" includes REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<]")
    foreach(line ${includes})
      string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*[\"<]([^\">]*)[\">].*$" "\\1" path "${line}")
      if(path MATCHES "^runtime/([A-Za-z0-9_]+)/" AND NOT "*" IN_LIST allowed)
        if(NOT CMAKE_MATCH_1 IN_LIST allowed)
          string(REPLACE ";" ", " may "${allowed}")
          list(APPEND violations
            "${file}: includes \"${path}\" (${dir} may include only runtime/{${may}})")
        endif()
      elseif(dir MATCHES "^runtime/" AND path MATCHES "^(compiler|passes|dialects|mlir|llvm)/")
        list(APPEND violations
          "${file}: includes \"${path}\" (the runtime never includes the compiler or MLIR)")
      endif()
    endforeach()
  endforeach()
endforeach()

# A tree with none of the directories is a wrong MT_SOURCE_DIR, not a pass.
if(checked EQUAL 0)
  message(FATAL_ERROR "layering: no source file under ${MT_SOURCE_DIR} (MT_SOURCE_DIR must "
                      "be a checkout with runtime/, compiler/, passes/, dialects/ or tools/)")
endif()
if(violations)
  list(LENGTH violations count)
  string(REPLACE ";" "\n  " text "${violations}")
  message(FATAL_ERROR "layering: ${count} forbidden include(s) (cmake/CheckLayering.cmake):\n  ${text}")
endif()
message(STATUS "layering: ok (${checked} files)")
