# Passed as -DCMAKE_PROJECT_INCLUDE=... by scripts/build_msgs.sh (venv builds against the ROS 2
# PyPI wheels only; a normal ROS 2 install never needs it).
#
# Why: the ROS 2 wheels were built in a manylinux container, and their exported CMake targets
# (e.g. std_msgs::std_msgs__rosidl_generator_py) carry that machine's Python include directories
# (/opt/python/cp311-cp311/include/...). CMake's generate step fails with "includes non-existent
# path" (ENVIRONMENT.md, ROS 2 section). The imported targets are only complete at the end of
# configure, so the fix is deferred to then: every non-existent absolute include directory of an
# imported target is dropped, and if any was dropped the local interpreter's
# ${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS} are added instead.

function(_safevla_fix_imported_python_includes)
  if(NOT DEFINED Python3_INCLUDE_DIRS OR NOT DEFINED Python3_NumPy_INCLUDE_DIRS)
    find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
  endif()
  set(_local_dirs ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_fixed "")
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_kept "")
    set(_dropped FALSE)
    foreach(_dir IN LISTS _dirs)
      if(IS_ABSOLUTE "${_dir}" AND NOT _dir MATCHES "\\$<" AND NOT EXISTS "${_dir}")
        set(_dropped TRUE)
      else()
        list(APPEND _kept "${_dir}")
      endif()
    endforeach()
    if(_dropped)
      list(APPEND _kept ${_local_dirs})
      list(REMOVE_DUPLICATES _kept)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
      list(APPEND _fixed ${_target})
    endif()
  endforeach()
  list(LENGTH _fixed _n)
  message(STATUS "safevla: re-pointed Python include dirs of ${_n} imported wheel targets to "
    "${_local_dirs}")
endfunction()

# CMAKE_PROJECT_INCLUDE runs right after project(); defer the fix to the end of the top-level
# directory's configure step, after every find_package() has created its imported targets.
if(CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _safevla_fix_imported_python_includes)
endif()
