#!/usr/bin/env bash
# Sets up what @int21/gpu's tests need to exercise its GPU backends without a GPU:
#   - WebGPU through Dawn (the `webgpu` npm package, a devDependency of @int21/gpu) on its OpenGL ES
#     backend, running on Mesa's llvmpipe software rasteriser with EGL_PLATFORM=surfaceless (no display);
#   - gpu.js in its cpu and webasm modes (pure JavaScript / WebAssembly: nothing to install).
# Not set up: gpu.js's headless-gl mode. Its native `gl` package is an optional dependency whose install
# script npm 11 skips unless approved; building it needs libxi-dev, python3, g++ and ~2.5 min of ANGLE
# compilation per install, plus Xvfb at run time — too slow for CI, so that mode reports itself
# unavailable and the tests skip it.
#
# Idempotent and fast when everything is present: it only calls apt-get when a package is missing.
# Called by .ci/run before the tests; safe to run by hand (needs root for apt-get).
set -euo pipefail

# libegl-dev provides the unversioned libEGL.so that Dawn dlopens; libgl1-mesa-dri holds llvmpipe.
PACKAGES=(libegl1 libegl-dev libegl-mesa0 libgles2 libgbm1 libgl1-mesa-dri)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "gpu-setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "gpu-setup: Mesa EGL/GLES packages already installed"
fi

# Report (never fail on) whether a WebGPU adapter can be made, so a CI log shows what the tests will see.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -f "$ROOT/node_modules/webgpu/index.js" ]; then
  (cd "$ROOT" && EGL_PLATFORM="${EGL_PLATFORM:-surfaceless}" timeout 60 node --input-type=module -e '
    import { create, globals } from "webgpu";
    Object.assign(globalThis, globals);
    const gpu = create(["backend=opengles"]);
    const a = await gpu.requestAdapter({ featureLevel: "compatibility" });
    console.log("gpu-setup: WebGPU (Dawn OpenGL ES):", a ? `${a.info.device || a.info.description || "adapter"}` : "no adapter");
    process.exit(0);
  ' 2>/dev/null) || echo "gpu-setup: WebGPU probe failed (the WebGPU tests will skip and say why)"
else
  echo "gpu-setup: the webgpu package is not installed (run npm ci first); WebGPU tests will skip"
fi
