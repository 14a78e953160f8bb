#!/usr/bin/env bash
# The tests of engine="llama.cpp" and of engine="openai" against llama.cpp's own server. They skip when
# the optional extra is missing, as in CI: llama-cpp-python compiles llama.cpp when installed (measured
# in docs/engines.md). This installs the extra when needed (image parts left out), then runs them.
#
#     benchmarks/run_llamacpp_tests.sh            # extra arguments go to pytest, e.g. -x -k grammar
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import llama_cpp, llama_cpp.server.app" 2>/dev/null; then
    echo "installing llama-cpp-python[server] (compiles llama.cpp; several minutes)" >&2
    CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" python -m pip install "llama-cpp-python[server]>=0.3.36"
fi
exec python -m pytest tests/test_engines_llamacpp.py tests/test_engines_openai.py -q -rs "$@"
