#!/usr/bin/env bash
# cibuildwheel's before-all on Linux: the CUDA compiler inside the
# manylinux_2_28 container (AlmaLinux 8), so that the x86_64 wheels carry the
# CUDA core. aarch64 wheels carry the C core only: nothing to install there.
#
# CUDA 12.8: built with any 12.x toolkit and the runtime linked statically,
# the CUDA core runs on every driver of CUDA 12 (525.60.13 or newer, by
# CUDA's minor-version compatibility); 12.8 still compiles for sm_75 and
# accepts gcc 13 as its host compiler.
set -euo pipefail
if [ "$(uname -m)" != x86_64 ]; then
  echo "install_cuda.sh: no CUDA core for $(uname -m) wheels"
  exit 0
fi
CUDA_VERSION=${MLP_CUDA_VERSION:-12.8}
dash=${CUDA_VERSION/./-}
dnf install -y dnf-plugins-core
dnf config-manager --add-repo \
  https://developer.download.nvidia.com/compute/cuda/repos/rhel8/x86_64/cuda-rhel8.repo
# nvcc, the static runtime and its headers; gcc-toolset-13 as nvcc's host
# compiler (the image's default toolset may be newer than CUDA 12.8 accepts)
dnf install -y "cuda-nvcc-$dash" "cuda-cudart-devel-$dash" gcc-toolset-13-gcc-c++
ln -sfn "/usr/local/cuda-$CUDA_VERSION" /usr/local/cuda
/usr/local/cuda/bin/nvcc --version
