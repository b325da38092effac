# Regenerates the plan instruction table from the dialect's ODS and fails
# when the committed runtime/plan/OpTable.inc differs (test OpTableIsCurrent).
# Usage: cmake -DMT_TBLGEN=<mt-tblgen> -DMT_SOURCE_DIR=<checkout>
#              -DMLIR_INCLUDE_DIRS=<dir> -DOUT=<scratch file> -P cmake/CheckOpTable.cmake

cmake_minimum_required(VERSION 3.25)

execute_process(
  COMMAND ${MT_TBLGEN} -I ${MT_SOURCE_DIR} -I ${MLIR_INCLUDE_DIRS}
          ${MT_SOURCE_DIR}/dialects/mt/MtOps.td -o ${OUT}
  RESULT_VARIABLE generated)
if(NOT generated EQUAL 0)
  message(FATAL_ERROR "mt-tblgen failed on dialects/mt/MtOps.td (see above)")
endif()
set(committed ${MT_SOURCE_DIR}/runtime/plan/OpTable.inc)
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${OUT} ${committed}
  RESULT_VARIABLE differs)
if(differs)
  execute_process(COMMAND diff -u ${committed} ${OUT})
  message(FATAL_ERROR "runtime/plan/OpTable.inc is stale: the ODS instruction records "
    "(dialects/mt/*.td) say otherwise (diff above, + is what they say). Regenerate it: "
    "cmake --build build --target update-op-table")
endif()
