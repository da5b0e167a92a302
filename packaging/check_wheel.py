"""Check a repaired Linux wheel: what each compiled module links, and what
stands between it and manylinux_2_28.

    python packaging/check_wheel.py WHEEL

Fails (exit 1) when a module needs a library outside the manylinux set
other than the ones bundled into the wheel, or when the CUDA module links the
CUDA runtime or the driver instead of loading the driver at run time.
Prints, per module, the glibc symbols newer than 2.28 (what keeps a wheel
built on a newer glibc from the manylinux_2_28 tag).
"""

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# What manylinux lets a wheel take from the system (PEP 600's list).
SYSTEM = {"libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0",
          "libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}


def needed(path):
    out = subprocess.run(["readelf", "-dW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def glibc_above(path, limit=(2, 28)):
    out = subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True,
                         check=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.search(r"\(GLIBC_(\d+)\.(\d+)(?:\.\d+)?\)\s+(\S+)$", line)
        if m and (int(m[1]), int(m[2])) > limit:
            found.setdefault(f"GLIBC_{m[1]}.{m[2]}", []).append(m[3])
    return found


def main(wheel):
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(wheel).extractall(tmp)
        root = Path(tmp)
        bundled = {p.name for p in root.glob("*.libs/*.so*")}
        for so in sorted(root.glob("mlp/*.so")) + sorted(root.glob("*.libs/*.so*")):
            libs = needed(so)
            print(f"{so.relative_to(root)}")
            print(f"  needs: {', '.join(libs)}")
            for lib in libs:
                if lib not in SYSTEM and lib not in bundled:
                    problems.append(f"{so.name} needs {lib}, neither allowed nor bundled")
            if so.name.startswith("_cuda"):
                if any("cudart" in lib or lib.startswith("libcuda.") for lib in libs):
                    problems.append(f"{so.name} links the CUDA runtime or driver")
                if b"libcuda.so.1" not in so.read_bytes():
                    problems.append(f"{so.name} does not load the driver (libcuda.so.1)")
            for version, names in sorted(glibc_above(so).items()):
                shown = ", ".join(sorted(names)[:8]) + (" ..." if len(names) > 8 else "")
                print(f"  above glibc 2.28: {version}: {len(names)} symbols ({shown})")
    for p in problems:
        print(f"check_wheel: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python packaging/check_wheel.py WHEEL")
    sys.exit(main(sys.argv[1]))
