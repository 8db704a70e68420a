"""Build hook: compile the numba kernels while the package is built, as lme4 and glmmTMB
compile their C++ at installation, so that the first fit after ``pip install`` does not
wait for them.

``python -m bayeslmm.warmup`` runs in the build environment (numpy, numba, scipy, pandas
and formulaic: the hook's dependencies below) against the source tree; numba writes the
compiled kernels beside the sources (``__pycache__``), stamped by the sources' content
(:mod:`bayeslmm.jit`). A wheel carries those files for this Python; an editable install
uses them where they are. A failure here never fails the build: the kernels then compile
on first use, with a one-line notice.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class KernelCacheHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or os.environ.get("BAYESLMM_SKIP_WARMUP"):
            return
        root = Path(self.root)
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        env.setdefault("MPLBACKEND", "Agg")
        start = time.perf_counter()
        print("bayeslmm: compiling the numeric kernels for this machine...", file=sys.stderr)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bayeslmm.warmup"], cwd=root, env=env,
                capture_output=True, text=True, timeout=1800,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as error:
            print(f"bayeslmm: kernels not precompiled ({error}); they compile on first use",
                  file=sys.stderr)  # fmt: skip
            return
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            print(f"bayeslmm: kernels not precompiled; they compile on first use:\n{tail}",
                  file=sys.stderr)  # fmt: skip
            return
        print(f"bayeslmm: kernels compiled in {time.perf_counter() - start:.0f} s",
              file=sys.stderr)  # fmt: skip
        if version == "editable":
            return  # the package runs from the source tree, beside its caches
        tag = f".py{sys.version_info.major}{sys.version_info.minor}."
        for path in sorted((root / "bayeslmm").rglob("__pycache__/*.nb[ic]")):
            if tag in path.name:
                build_data["force_include"][str(path)] = str(path.relative_to(root))
